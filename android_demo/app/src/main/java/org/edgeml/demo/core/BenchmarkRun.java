package org.edgeml.demo.core;

/**
 * The benchmark mode's procedure, independent of Android: load the program (timed), warm up,
 * time N runs, and report in the benchmark app's schema. A program that fails to load is
 * reported with its load time and a non-zero load_status, and no latency.
 */
public final class BenchmarkRun {
    /** What is benchmarked: an ExecuTorch Module on the phone, a fake in tests. */
    public interface Program {
        /** Load the program and its method; 0 on success, otherwise an error code. */
        int load() throws Exception;

        /** One inference on the prepared input. */
        void run() throws Exception;

        /** Resident memory in MiB after the runs, or a negative value when unknown. */
        double memoryMb();

        void close();
    }

    private BenchmarkRun() {
    }

    public static BenchmarkReport run(String artifactFileName, Program program, int warmup, int iterations,
                                      DeviceInfo device, LatencyBenchmark.Clock clock) throws Exception {
        BenchmarkReport report = new BenchmarkReport(ArtifactName.parse(artifactFileName), device);
        long t0 = clock.nanoTime();
        int status;
        try {
            status = program.load();
        } catch (Exception e) {
            status = -1;
        }
        double loadMs = (clock.nanoTime() - t0) / 1.0e6;
        report.add(BenchmarkReport.LOAD_TIME, loadMs);
        report.add(BenchmarkReport.LOAD_STATUS, status);
        if (status != 0) {
            program.close();
            return report;
        }
        try {
            final Program p = program;
            LatencyStats stats = LatencyBenchmark.measure(new LatencyBenchmark.Task() {
                @Override
                public void run() throws Exception {
                    p.run();
                }
            }, warmup, iterations, clock);
            report.addLatency(stats);
            double mb = program.memoryMb();
            if (mb >= 0) {
                report.add(BenchmarkReport.RAM_PSS, mb);
            }
        } finally {
            program.close();
        }
        return report;
    }
}
