package org.edgeml.demo.core;

/**
 * Warm-up, then N timed runs of a task: the measuring loop shared by the interactive screen and
 * the benchmark mode, kept free of Android so that it is unit-tested with a fake clock.
 */
public final class LatencyBenchmark {
    /** One inference (or any unit of work) to time. */
    public interface Task {
        void run() throws Exception;
    }

    /** Monotonic nanoseconds (System.nanoTime in the app, a fake in tests). */
    public interface Clock {
        long nanoTime();
    }

    public static final Clock SYSTEM_CLOCK = new Clock() {
        @Override
        public long nanoTime() {
            return System.nanoTime();
        }
    };

    private LatencyBenchmark() {
    }

    public static LatencyStats measure(Task task, int warmup, int iterations, Clock clock) throws Exception {
        if (warmup < 0) {
            throw new IllegalArgumentException("warm-up runs must be >= 0, got " + warmup);
        }
        if (iterations < 1) {
            throw new IllegalArgumentException("timed runs must be >= 1, got " + iterations);
        }
        for (int i = 0; i < warmup; i++) {
            task.run();
        }
        double[] ms = new double[iterations];
        for (int i = 0; i < iterations; i++) {
            long t0 = clock.nanoTime();
            task.run();
            ms[i] = (clock.nanoTime() - t0) / 1.0e6;
        }
        return new LatencyStats(ms);
    }
}
