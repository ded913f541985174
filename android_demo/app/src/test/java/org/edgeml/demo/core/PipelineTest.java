package org.edgeml.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Classification and tile encoding driven end to end by the manifest, with fake runners. */
public class PipelineTest {
    static RgbImage gradient(int w, int h) {
        byte[] px = new byte[w * h * 3];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int i = (y * w + x) * 3;
                px[i] = (byte) (x * 255 / Math.max(1, w - 1));
                px[i + 1] = (byte) (y * 255 / Math.max(1, h - 1));
                px[i + 2] = (byte) 128;
            }
        }
        return new RgbImage(w, h, px);
    }

    @Test
    public void classificationFeedsTheManifestShapeAndRanksLogits() throws Exception {
        final Manifest m = Manifest.parse(ManifestTest.fixture(ManifestTest.CLASSIFIER));
        final List<long[]> shapes = new ArrayList<long[]>();
        final float[][] seen = new float[1][];
        ModelRunner fake = new ModelRunner() {
            @Override
            public TensorData forward(TensorData input) {
                shapes.add(input.shape);
                seen[0] = input.data;
                float[] logits = new float[1000];
                logits[7] = 9f;
                logits[3] = 8f;
                logits[999] = 7f;
                logits[0] = 6f;
                logits[500] = 5f;
                return new TensorData(logits, new long[] {1, 1000});
            }
        };
        LatencyTest.ScriptedClock clock = new LatencyTest.ScriptedClock();
        RgbImage img = gradient(320, 240);
        Classification c = Classification.run(m, img, fake, 2, 5, 5, clock);
        assertEquals(7, shapes.size());
        for (long[] s : shapes) {
            assertArrayEquals(new long[] {1, 3, 224, 224}, s);
        }
        assertArrayEquals(m.preprocessing.apply(img), seen[0], 0f);
        int[] expected = {7, 3, 999, 0, 500};
        for (int i = 0; i < 5; i++) {
            assertEquals(expected[i], c.top[i].index);
        }
        assertEquals(5, c.latency.count());
    }

    @Test
    public void fixedBatchClassifierGetsTheImageInEveryRowAndRanksTheFirst() throws Exception {
        Map<String, Object> doc = Json.parseObject(ManifestTest.fixture(ManifestTest.CLASSIFIER));
        @SuppressWarnings("unchecked")
        Map<String, Object> in = (Map<String, Object>) ((List<Object>) doc.get("inputs")).get(0);
        in.put("shape", Json.parse("[2, 3, 224, 224]"));
        Manifest m = Manifest.parse(Json.write(doc));
        final RgbImage img = gradient(300, 200);
        final float[] one = m.preprocessing.apply(img);
        Classification c = Classification.run(m, img, new ModelRunner() {
            @Override
            public TensorData forward(TensorData input) {
                assertArrayEquals(new long[] {2, 3, 224, 224}, input.shape);
                for (int i = 0; i < one.length; i += 101) {
                    assertEquals(one[i], input.data[i], 0f);
                    assertEquals(one[i], input.data[one.length + i], 0f);
                }
                float[] logits = new float[2000];
                logits[42] = 5f;        // row 0
                logits[1000 + 7] = 9f;  // row 1 must not be ranked
                return new TensorData(logits, new long[] {2, 1000});
            }
        }, 0, 1, 1, new LatencyTest.ScriptedClock());
        assertEquals(42, c.top[0].index);
    }

    private static Manifest tileManifest(boolean dynamicBatch) throws Exception {
        Map<String, Object> doc = Json.parseObject(ManifestTest.fixture(ManifestTest.TILE_ENCODER));
        if (dynamicBatch) {
            @SuppressWarnings("unchecked")
            Map<String, Object> in = (Map<String, Object>) ((List<Object>) doc.get("inputs")).get(0);
            in.put("dynamic", Json.parse("{\"0\": [1, 8]}"));
        }
        return Manifest.parse(Json.write(doc));
    }

    /** Returns 144 tokens of width 2 per tile, and records the batch sizes it was given. */
    static final class FakeEncoder implements ModelRunner {
        final List<Long> batches = new ArrayList<Long>();
        final List<float[]> inputs = new ArrayList<float[]>();

        @Override
        public TensorData forward(TensorData input) {
            assertEquals(4, input.shape.length);
            assertEquals(3, input.shape[1]);
            assertEquals(384, input.shape[2]);
            assertEquals(384, input.shape[3]);
            batches.add(input.shape[0]);
            inputs.add(input.data);
            return new TensorData(new float[(int) input.shape[0] * 144 * 2], new long[] {input.shape[0], 144, 2});
        }
    }

    @Test
    public void phoneScreenshotIsEncodedAsFourFourOne() throws Exception {
        // 1080x2400 with grids up to 3x3 (the fixture's max_grid): relaxed picks 2x3 -> 7 tiles.
        Manifest m = tileManifest(true);
        FakeEncoder enc = new FakeEncoder();
        TileEncoding e = TileEncoding.run(m, gradient(1080, 2400), enc, new LatencyTest.ScriptedClock());
        int[] grid = TileSelector.select(1080, 2400, m.preprocessing.tiling);
        assertArrayEquals(grid, e.grid);
        int tiles = grid[0] * grid[1] + 1;
        assertEquals(tiles, e.numTiles);
        assertEquals(144L * tiles, e.totalTokens);
        long sum = 0;
        for (long b : enc.batches) {
            assertTrue(b <= 4);
            sum += b;
        }
        assertEquals(tiles, sum);
        assertArrayEquals(Tiler.planBatches(tiles, 4), e.batches);
        assertEquals(e.batches.length, e.batchLatencyMs.length);
    }

    @Test
    public void fixedBatchProgramGetsAPaddedLastBatch() throws Exception {
        Manifest m = tileManifest(false);
        FakeEncoder enc = new FakeEncoder();
        // 800x600 -> relaxed 2x2 -> 4 tiles + thumbnail = 5 -> calls of 4 and 4 (1 real + 3 zero tiles).
        TileEncoding e = TileEncoding.run(m, gradient(800, 600), enc, new LatencyTest.ScriptedClock());
        assertArrayEquals(new int[] {2, 2}, e.grid);
        assertEquals(5, e.numTiles);
        assertEquals("[4, 4]", enc.batches.toString());
        assertArrayEquals(new int[] {4, 1}, e.batches);
        assertArrayEquals(new int[] {0, 3}, e.padding);
        assertEquals(5 * 144L, e.totalTokens);
        // The padding tiles are black (0), normalized: (0 - 0.5) / 0.5 = -1.
        float[] last = enc.inputs.get(1);
        int per = 3 * 384 * 384;
        for (int i = per; i < 4 * per; i += 997) {
            assertEquals(-1f, last[i], 0f);
        }
    }

    @Test
    public void wrongOutputBatchIsAnError() throws Exception {
        Manifest m = tileManifest(false);
        try {
            TileEncoding.run(m, gradient(400, 400), new ModelRunner() {
                @Override
                public TensorData forward(TensorData input) {
                    return new TensorData(new float[144], new long[] {1, 144});
                }
            }, new LatencyTest.ScriptedClock());
            fail("a batch-1 output for a batch-4 input must be reported");
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage().contains("batch"));
        }
    }

    @Test
    public void tilesCoverTheImageRowMajorWithThumbnailLast() {
        RgbImage img = gradient(300, 100);
        Tiler.Tiled t = Tiler.tile(img, new int[] {3, 1}, 100, 0, true);
        assertEquals(4, t.numTiles());
        assertArrayEquals(new int[] {0, 0, 300, 100}, t.contentBox);
        // Same size: the tiles are exact copies of the image's thirds.
        for (int k = 0; k < 3; k++) {
            RgbImage tile = t.tiles.get(k);
            for (int y = 0; y < 100; y += 9) {
                for (int x = 0; x < 100; x += 7) {
                    for (int c = 0; c < 3; c++) {
                        assertEquals(img.get(k * 100 + x, y, c), tile.get(x, y, c));
                    }
                }
            }
        }
        assertEquals(100, t.tiles.get(3).width);
        // A wide image in a 2x2 grid is centred vertically with black bands.
        Tiler.Tiled p = Tiler.tile(img, new int[] {2, 2}, 100, 0, false);
        assertArrayEquals(new int[] {0, 66, 200, 67}, p.contentBox); // top = (200 - 67) / 2
        assertEquals(4, p.numTiles());
        assertEquals(0, p.tiles.get(0).get(50, 10, 2));
        assertEquals(128, p.tiles.get(0).get(50, 90, 2));
    }

    @Test
    public void batchPlans() {
        assertArrayEquals(new int[] {4, 4, 1}, Tiler.planBatches(9, 4));
        assertArrayEquals(new int[] {4, 3}, Tiler.planBatches(7, 4));
        assertArrayEquals(new int[] {}, Tiler.planBatches(0, 4));
        assertEquals(3, Tiler.paddedTiles(9, 4));
        assertEquals(0, Tiler.paddedTiles(8, 4));
    }
}
