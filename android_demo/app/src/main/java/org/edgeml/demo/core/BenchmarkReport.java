package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Benchmark results in the JSON schema of ExecuTorch's Android benchmark app
 * (org.pytorch.minibench, files/benchmark_results.json), which {@code edgeml profile --device adb}
 * reads: a list of
 * <pre>
 * {"benchmarkModel": {"name", "backend", "quantization"}, "metric": "avg_inference_latency(ms)",
 *  "actualValue": 12.3, "targetValue": 0.0,
 *  "deviceInfo": {"device", "arch", "os", "totalMem", "availMem"}}
 * </pre>
 * Key names and metric names are the benchmark app's.
 */
public final class BenchmarkReport {
    public static final String AVG_LATENCY = "avg_inference_latency(ms)";
    public static final String TRIMMEAN_LATENCY = "trimmean_inference_latency(ms)";
    public static final String LOAD_TIME = "model_load_time(ms)";
    public static final String LOAD_STATUS = "load_status";
    public static final String RAM_PSS = "ram_pss_usage(mb)";

    private final ArtifactName model;
    private final DeviceInfo device;
    private final List<Map<String, Object>> entries = new ArrayList<Map<String, Object>>();

    public BenchmarkReport(ArtifactName model, DeviceInfo device) {
        this.model = model;
        this.device = device;
    }

    public BenchmarkReport add(String metric, double actualValue) {
        return add(metric, actualValue, 0.0);
    }

    public BenchmarkReport add(String metric, double actualValue, double targetValue) {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        Map<String, Object> bm = new LinkedHashMap<String, Object>();
        bm.put("name", model.model);
        bm.put("backend", model.backend);
        bm.put("quantization", model.quantization);
        m.put("benchmarkModel", bm);
        m.put("metric", metric);
        m.put("actualValue", Double.valueOf(actualValue));
        m.put("targetValue", Double.valueOf(targetValue));
        Map<String, Object> d = new LinkedHashMap<String, Object>();
        d.put("device", device.device);
        d.put("arch", device.arch);
        d.put("os", device.os);
        d.put("totalMem", Long.valueOf(device.totalMem));
        d.put("availMem", Long.valueOf(device.availMem));
        m.put("deviceInfo", d);
        entries.add(m);
        return this;
    }

    /** The latency metrics of a finished run: average and trimmed mean (middle 80%). */
    public BenchmarkReport addLatency(LatencyStats stats) {
        add(AVG_LATENCY, stats.mean);
        add(TRIMMEAN_LATENCY, stats.trimmedMean);
        return this;
    }

    public List<Map<String, Object>> entries() {
        return Collections.unmodifiableList(entries);
    }

    public String toJson() {
        return Json.write(new ArrayList<Object>(entries)) + "\n";
    }
}
