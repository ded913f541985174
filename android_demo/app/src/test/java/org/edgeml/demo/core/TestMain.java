package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.List;
import org.junit.runner.Description;
import org.junit.runner.JUnitCore;
import org.junit.runner.Request;
import org.junit.runner.Result;
import org.junit.runner.notification.Failure;
import org.junit.runner.notification.RunListener;

/**
 * Runs the JVM tests given on the command line (class names) with JUnit 4 and prints one line per
 * test and a closing "N passed, N failed" line; exits 1 if any failed. Used by .ci/android.sh,
 * where Gradle cannot run.
 */
public final class TestMain {
    private TestMain() {
    }

    public static void main(String[] args) throws Exception {
        final List<String> failedNames = new ArrayList<String>();
        final int[] started = {0};
        JUnitCore core = new JUnitCore();
        core.addListener(new RunListener() {
            private boolean failed;

            @Override
            public void testStarted(Description d) {
                failed = false;
                started[0]++;
            }

            @Override
            public void testFailure(Failure f) {
                failed = true;
                failedNames.add(f.getDescription().getDisplayName());
                System.out.println("FAIL " + f.getDescription().getDisplayName() + ": " + f.getMessage());
                String trace = f.getTrace();
                String[] lines = trace.split("\n");
                for (int i = 0; i < Math.min(lines.length, 8); i++) {
                    System.out.println("    " + lines[i]);
                }
            }

            @Override
            public void testFinished(Description d) {
                if (!failed) {
                    System.out.println("ok   " + d.getDisplayName());
                }
            }
        });
        int passed = 0;
        int failed = 0;
        for (String name : args) {
            Result r = core.run(Request.aClass(Class.forName(name)));
            failed += r.getFailureCount();
            passed += r.getRunCount() - r.getFailureCount() - r.getAssumptionFailureCount();
        }
        if (started[0] == 0) {
            System.out.println("no test ran");
            failed++;
        }
        System.out.println("JVM tests: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
