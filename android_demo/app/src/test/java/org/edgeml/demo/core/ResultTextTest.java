package org.edgeml.demo.core;

import static org.junit.Assert.assertTrue;

import org.junit.Test;

/** What the screen shows is built from the manifest and the measured results. */
public class ResultTextTest {
    private static void assertContains(String text, String part) {
        assertTrue("expected \"" + part + "\" in:\n" + text, text.contains(part));
    }

    @Test
    public void modelSummaryComesFromTheManifest() throws Exception {
        Manifest m = Manifest.parse(ManifestTest.fixture(ManifestTest.CLASSIFIER));
        String s = ResultText.model(m, ArtifactName.parse("mobilenetv2_xnnpack_int8.pte"), 3_612_345L,
                new String[] {"XnnpackBackend"});
        assertContains(s, "Model: mobilenetv2");
        assertContains(s, "Quantization: int8_static_per_channel (file name: int8)");
        assertContains(s, "Backend: xnnpack (program delegates to XnnpackBackend)");
        assertContains(s, "Size: 3.61 MB");
        assertContains(s, "resize 256, crop 224");
        assertContains(s, "ExecuTorch 1.5.1");
    }

    @Test
    public void classificationShowsTopFiveWithLabelsAndMedianLatency() throws Exception {
        Manifest m = Manifest.parse(ManifestTest.fixture(ManifestTest.CLASSIFIER));
        final double[] ms = {30, 10, 12, 11};
        final LatencyTest.ScriptedClock clock = new LatencyTest.ScriptedClock();
        final int[] call = {0};
        Classification c = Classification.run(m, PipelineTest.gradient(64, 48), new ModelRunner() {
            @Override
            public TensorData forward(TensorData input) {
                clock.advanceMs(ms[call[0]++]);
                float[] logits = new float[1000];
                logits[281] = 10f;
                return new TensorData(logits, new long[] {1, 1000});
            }
        }, 1, 3, 5, clock);
        StringBuilder names = new StringBuilder();
        for (int i = 0; i < 1000; i++) {
            names.append(i == 281 ? "tabby" : "n" + i).append('\n');
        }
        String s = ResultText.classification(c, Labels.parse(names.toString()));
        assertContains(s, "Top-5:");
        assertContains(s, "1. tabby");
        assertContains(s, "Latency: median 11.00 ms over 3 runs");
    }

    @Test
    public void tileSummaryShowsGridTokensAndBatches() throws Exception {
        Manifest m = Manifest.parse(ManifestTest.fixture(ManifestTest.TILE_ENCODER));
        TileEncoding t = TileEncoding.run(m, PipelineTest.gradient(800, 600), new PipelineTest.FakeEncoder(),
                new LatencyTest.ScriptedClock());
        String s = ResultText.tiles(t);
        assertContains(s, "Grid: 2 x 2");
        assertContains(s, "Tiles: 5 (4 local + thumbnail)");
        assertContains(s, "Tokens: 720 (144 per tile)");
        assertContains(s, "2. 1 tile + 3 padding");
    }
}
