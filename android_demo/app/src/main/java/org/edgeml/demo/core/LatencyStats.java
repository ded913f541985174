package org.edgeml.demo.core;

import java.util.Arrays;

/** Summary of a series of latencies in milliseconds. */
public final class LatencyStats {
    public final double[] samplesMs;
    public final double min;
    public final double max;
    public final double mean;
    public final double median;
    public final double p90;
    /**
     * Mean of the middle 80% after sorting, the way ExecuTorch's benchmark app computes its
     * trimmean: samples [n/10, n*9/10) (integer division); the plain mean when that is empty.
     */
    public final double trimmedMean;

    public LatencyStats(double[] samplesMs) {
        if (samplesMs.length == 0) {
            throw new IllegalArgumentException("no latency samples");
        }
        this.samplesMs = samplesMs.clone();
        double[] s = samplesMs.clone();
        Arrays.sort(s);
        int n = s.length;
        min = s[0];
        max = s[n - 1];
        double sum = 0;
        for (double v : s) {
            sum += v;
        }
        mean = sum / n;
        median = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0;
        p90 = percentile(s, 90);
        int lo = n / 10;
        int hi = n * 9 / 10;
        if (hi > lo) {
            double t = 0;
            for (int i = lo; i < hi; i++) {
                t += s[i];
            }
            trimmedMean = t / (hi - lo);
        } else {
            trimmedMean = mean;
        }
    }

    /** Linear-interpolation percentile (numpy's default) of sorted data. */
    static double percentile(double[] sorted, double q) {
        double pos = (sorted.length - 1) * q / 100.0;
        int i = (int) Math.floor(pos);
        int j = Math.min(i + 1, sorted.length - 1);
        double frac = pos - i;
        return sorted[i] + (sorted[j] - sorted[i]) * frac;
    }

    public int count() {
        return samplesMs.length;
    }
}
