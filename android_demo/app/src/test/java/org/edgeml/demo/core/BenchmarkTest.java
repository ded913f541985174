package org.edgeml.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** The benchmark mode's file name parsing and its JSON, in ExecuTorch's benchmark-app schema. */
public class BenchmarkTest {
    static final DeviceInfo DEVICE = new DeviceInfo("google", "Pixel 8", "Android 14", 8_000_000_000L, 3_000_000_000L);

    @Test
    public void fileNamesFollowTheBenchmarkConvention() {
        ArtifactName a = ArtifactName.parse("/data/local/tmp/edgeml/mobilemamba_t2_xnnpack_int8.pte");
        assertEquals("mobilemamba_t2", a.model);
        assertEquals("xnnpack", a.backend);
        assertEquals("int8", a.quantization);
        ArtifactName b = ArtifactName.parse("mv3_qnn+xnnpack_fp32.pte");
        assertEquals("mv3", b.model);
        assertEquals("qnn+xnnpack", b.backend);
        ArtifactName c = ArtifactName.parse("model.pte");
        assertEquals("model", c.model);
        assertEquals("", c.backend);
        assertEquals("", c.quantization);
        ArtifactName d = ArtifactName.parse("mobilenet-v2_xnnpack_fp32.pte");
        assertEquals("mobilenet-v2_xnnpack_fp32", d.model);
        assertEquals("", d.backend);
    }

    @SuppressWarnings("unchecked")
    @Test
    public void reportHasTheBenchmarkAppKeys() {
        BenchmarkReport r = new BenchmarkReport(ArtifactName.parse("mobilenetv2_xnnpack_int8.pte"), DEVICE);
        r.add(BenchmarkReport.LOAD_TIME, 12.5).addLatency(new LatencyStats(new double[] {3, 4, 5}));
        List<Object> parsed = (List<Object>) Json.parse(r.toJson());
        assertEquals(3, parsed.size());
        List<String> metrics = new ArrayList<String>();
        for (Object o : parsed) {
            Map<String, Object> e = (Map<String, Object>) o;
            assertEquals("[benchmarkModel, metric, actualValue, targetValue, deviceInfo]", e.keySet().toString());
            Map<String, Object> bm = (Map<String, Object>) e.get("benchmarkModel");
            assertEquals("[name, backend, quantization]", bm.keySet().toString());
            assertEquals("mobilenetv2", bm.get("name"));
            assertEquals("xnnpack", bm.get("backend"));
            assertEquals("int8", bm.get("quantization"));
            Map<String, Object> d = (Map<String, Object>) e.get("deviceInfo");
            assertEquals("[device, arch, os, totalMem, availMem]", d.keySet().toString());
            assertEquals("Pixel 8", d.get("arch"));
            assertEquals(Long.valueOf(8_000_000_000L), d.get("totalMem"));
            assertEquals(0.0, (Double) e.get("targetValue"), 0);
            metrics.add((String) e.get("metric"));
        }
        assertEquals("[model_load_time(ms), avg_inference_latency(ms), trimmean_inference_latency(ms)]",
                metrics.toString());
        assertEquals(12.5, (Double) ((Map<String, Object>) parsed.get(0)).get("actualValue"), 0);
        assertEquals(4.0, (Double) ((Map<String, Object>) parsed.get(1)).get("actualValue"), 1e-12);
    }

    /** A program whose load and runs advance a scripted clock. */
    static final class FakeProgram implements BenchmarkRun.Program {
        final LatencyTest.ScriptedClock clock;
        final int loadStatus;
        int runs;
        boolean closed;

        FakeProgram(LatencyTest.ScriptedClock clock, int loadStatus) {
            this.clock = clock;
            this.loadStatus = loadStatus;
        }

        @Override
        public int load() {
            clock.advanceMs(250);
            return loadStatus;
        }

        @Override
        public void run() {
            runs++;
            clock.advanceMs(runs <= 3 ? 100 : 10 + runs % 3); // slow warm-up, then 10..12 ms
        }

        @Override
        public double memoryMb() {
            return 42.0;
        }

        @Override
        public void close() {
            closed = true;
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Double> values(BenchmarkReport r) {
        Map<String, Double> out = new java.util.LinkedHashMap<String, Double>();
        for (Object o : (List<Object>) Json.parse(r.toJson())) {
            Map<String, Object> e = (Map<String, Object>) o;
            out.put((String) e.get("metric"), (Double) e.get("actualValue"));
        }
        return out;
    }

    @Test
    public void benchmarkRunReportsLoadWarmupAndLatency() throws Exception {
        LatencyTest.ScriptedClock clock = new LatencyTest.ScriptedClock();
        FakeProgram p = new FakeProgram(clock, 0);
        BenchmarkReport r = BenchmarkRun.run("m_xnnpack_fp32.pte", p, 3, 20, DEVICE, clock);
        assertEquals(23, p.runs);
        assertTrue(p.closed);
        Map<String, Double> v = values(r);
        assertEquals(250.0, v.get("model_load_time(ms)"), 1e-9);
        assertEquals(0.0, v.get("load_status"), 0);
        assertTrue("warm-up must not be averaged in: " + v, v.get("avg_inference_latency(ms)") < 13);
        assertTrue(v.get("avg_inference_latency(ms)") >= 10);
        assertTrue(v.get("trimmean_inference_latency(ms)") >= 10);
        assertEquals(42.0, v.get("ram_pss_usage(mb)"), 0);
    }

    @Test
    public void failedLoadIsReportedWithoutLatency() throws Exception {
        LatencyTest.ScriptedClock clock = new LatencyTest.ScriptedClock();
        FakeProgram p = new FakeProgram(clock, 20);
        Map<String, Double> v = values(BenchmarkRun.run("m_xnnpack_fp32.pte", p, 3, 20, DEVICE, clock));
        assertEquals(0, p.runs);
        assertTrue(p.closed);
        assertEquals(20.0, v.get("load_status"), 0);
        assertEquals("[model_load_time(ms), load_status]", v.keySet().toString());
    }
}
