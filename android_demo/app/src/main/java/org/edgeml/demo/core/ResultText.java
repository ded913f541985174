package org.edgeml.demo.core;

import java.util.Locale;

/** The text the app shows, built from results only, so the JVM tests can check it. */
public final class ResultText {
    private ResultText() {
    }

    /** Model name, quantization, backend, program size and tool version, from the manifest. */
    public static String model(Manifest m, ArtifactName name, long programBytes, String[] runtimeBackends) {
        StringBuilder sb = new StringBuilder();
        sb.append("Model: ").append(m.modelName).append('\n');
        sb.append("Quantization: ").append(m.quantizationScheme);
        if (!name.quantization.isEmpty() && !name.quantization.equals(m.quantizationScheme)) {
            sb.append(" (file name: ").append(name.quantization).append(')');
        }
        sb.append('\n');
        sb.append("Backend: ").append(m.backend.isEmpty() ? name.backend : m.backend);
        if (runtimeBackends != null && runtimeBackends.length > 0) {
            sb.append(" (program delegates to");
            for (String b : runtimeBackends) {
                sb.append(' ').append(b);
            }
            sb.append(')');
        }
        sb.append('\n');
        sb.append(String.format(Locale.US, "Size: %.2f MB", programBytes / 1e6)).append('\n');
        sb.append("Input: ").append(m.inputs[0]).append('\n');
        if (m.isTileEncoder()) {
            sb.append("Tiling: ").append(m.preprocessing.tiling).append('\n');
        } else if (m.preprocessing != null) {
            sb.append("Preprocessing: resize ").append(m.preprocessing.resizeShorter)
                    .append(", crop ").append(m.preprocessing.crop).append('\n');
        }
        if (m.executorchVersion != null) {
            sb.append("Exported with ExecuTorch ").append(m.executorchVersion).append('\n');
        }
        return sb.toString();
    }

    public static String classification(Classification c, Labels labels) {
        StringBuilder sb = new StringBuilder();
        sb.append("Top-").append(c.top.length).append(":\n");
        for (int i = 0; i < c.top.length; i++) {
            TopK.Entry e = c.top[i];
            sb.append(String.format(Locale.US, "%d. %-28s %6.2f%%  (logit %.3f, class %d)%n", i + 1,
                    labels.name(e.index), 100.0 * e.probability, e.score, e.index));
        }
        sb.append(latency(c.latency));
        sb.append(String.format(Locale.US, "Preprocessing: %.1f ms%n", c.preprocessMs));
        return sb.toString();
    }

    public static String latency(LatencyStats s) {
        return String.format(Locale.US, "Latency: median %.2f ms over %d runs (min %.2f, p90 %.2f, mean %.2f)%n",
                s.median, s.count(), s.min, s.p90, s.mean);
    }

    public static String tiles(TileEncoding t) {
        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.US, "Grid: %d x %d (%d across, %d down)%n", t.grid[0], t.grid[1], t.grid[0], t.grid[1]));
        sb.append("Tiles: ").append(t.numTiles).append(" (").append(t.grid[0] * t.grid[1]).append(" local");
        sb.append(t.numTiles > t.grid[0] * t.grid[1] ? " + thumbnail)" : ")").append('\n');
        sb.append("Tokens: ").append(t.totalTokens).append(" (").append(t.tokensPerTile).append(" per tile)\n");
        sb.append("Batches:");
        double total = 0;
        for (int b = 0; b < t.batches.length; b++) {
            sb.append(String.format(Locale.US, "%n  %d. %d tile%s%s: %.1f ms", b + 1, t.batches[b],
                    t.batches[b] == 1 ? "" : "s", t.padding[b] > 0 ? " + " + t.padding[b] + " padding" : "",
                    t.batchLatencyMs[b]));
            total += t.batchLatencyMs[b];
        }
        sb.append(String.format(Locale.US, "%nEncoder total: %.1f ms%n", total));
        return sb.toString();
    }
}
