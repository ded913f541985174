package org.edgeml.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class LatencyTest {
    /** A clock that advances by the next scripted duration each time a task runs. */
    static final class ScriptedClock implements LatencyBenchmark.Clock {
        long now = 1_000_000L;

        @Override
        public long nanoTime() {
            return now;
        }

        void advanceMs(double ms) {
            now += Math.round(ms * 1e6);
        }
    }

    @Test
    public void statsOfKnownSamples() {
        LatencyStats s = new LatencyStats(new double[] {5, 1, 3, 2, 4, 100, 6, 7, 8, 9});
        assertEquals(1, s.min, 0);
        assertEquals(100, s.max, 0);
        assertEquals(14.5, s.mean, 1e-12);
        assertEquals(5.5, s.median, 1e-12);
        // Middle 80% of 10 sorted samples: indices 1..8 -> 2..9.
        assertEquals(5.5, s.trimmedMean, 1e-12);
        assertEquals(18.1, s.p90, 1e-9);
        assertEquals(3, new LatencyStats(new double[] {9, 3, 1}).median, 0);
    }

    @Test
    public void warmupRunsAreNotTimed() throws Exception {
        final ScriptedClock clock = new ScriptedClock();
        final double[] durations = {50, 40, 10, 12, 11, 13, 9};
        final int[] calls = {0};
        LatencyStats s = LatencyBenchmark.measure(new LatencyBenchmark.Task() {
            @Override
            public void run() {
                clock.advanceMs(durations[calls[0]++]);
            }
        }, 2, 5, clock);
        assertEquals(7, calls[0]);
        assertEquals(5, s.count());
        assertEquals(11, s.median, 1e-9);
        assertEquals(9, s.min, 1e-9);
    }

    @Test(expected = IllegalArgumentException.class)
    public void zeroRunsIsAnError() throws Exception {
        LatencyBenchmark.measure(new LatencyBenchmark.Task() {
            @Override
            public void run() {
            }
        }, 0, 0, LatencyBenchmark.SYSTEM_CLOCK);
    }

    @Test
    public void systemClockMeasuresRealTime() throws Exception {
        LatencyStats s = LatencyBenchmark.measure(new LatencyBenchmark.Task() {
            @Override
            public void run() throws Exception {
                Thread.sleep(5);
            }
        }, 0, 2, LatencyBenchmark.SYSTEM_CLOCK);
        assertTrue("sleep(5) measured as " + s.min + " ms", s.min >= 4.5);
    }
}
