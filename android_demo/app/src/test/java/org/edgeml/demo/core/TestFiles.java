package org.edgeml.demo.core;

import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;

/**
 * Where the tests find their inputs. Each can be overridden with a system property (the CI
 * script passes them); otherwise test resources come from the classpath (as under Gradle) and
 * the photos from shared/images beside the repository (../shared/images from its root).
 */
final class TestFiles {
    private TestFiles() {
    }

    static File resource(String property, String name) throws IOException {
        String override = System.getProperty(property);
        if (override != null && !override.isEmpty()) {
            File f = new File(override);
            if (!f.isFile()) {
                throw new IOException("-D" + property + "=" + override + " is not a file");
            }
            return f;
        }
        URL url = TestFiles.class.getResource("/" + name);
        if (url == null) {
            throw new IOException("test resource " + name + " is not on the classpath (android_demo/app/src/test/resources)");
        }
        try {
            return new File(url.toURI());
        } catch (URISyntaxException e) {
            throw new IOException(e);
        }
    }

    static File imagesDir() throws IOException {
        String override = System.getProperty("edgeml.images");
        if (override != null && !override.isEmpty()) {
            File d = new File(override);
            if (!d.isDirectory()) {
                throw new IOException("-Dedgeml.images=" + override + " is not a folder");
            }
            return d;
        }
        File dir = new File(System.getProperty("user.dir")).getAbsoluteFile();
        while (dir != null) {
            File[] candidates = {new File(dir, "shared/images"), new File(dir.getParentFile(), "shared/images")};
            for (File c : candidates) {
                if (c.getParentFile() != null && c.isDirectory()) {
                    return c;
                }
            }
            dir = dir.getParentFile();
        }
        throw new IOException("cannot find shared/images beside the repository; pass -Dedgeml.images=DIR");
    }
}
