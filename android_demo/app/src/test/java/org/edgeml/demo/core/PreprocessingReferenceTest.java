package org.edgeml.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/**
 * The Java preprocessing against tensors that edgeml's own Python preprocessing produced from real
 * photos in shared/images (android_demo/tools/make_preprocess_reference.py): max abs difference
 * after normalization must be <= 1e-5.
 */
public class PreprocessingReferenceTest {
    static final double TOLERANCE = 1e-5;

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> cases(ReferenceFile ref) {
        assertEquals("edgeml-preprocess-reference/1", ref.header.get("format"));
        return (List<Map<String, Object>>) ref.header.get("cases");
    }

    private static ReferenceFile reference() throws IOException {
        return ReferenceFile.read(TestFiles.resource("edgeml.preprocessReference", "preprocess_reference.bin"));
    }

    private static RgbImage image(Map<String, Object> c) throws Exception {
        File file = new File(TestFiles.imagesDir(), (String) c.get("image"));
        assertTrue("missing photo " + file, file.isFile());
        assertEquals("the photo " + file + " is not the one the reference was made from",
                c.get("sha256"), sha256(file));
        RgbImage img = JvmImages.read(file);
        long[] size = JsonFields.longs(c.get("size"), "size");
        assertEquals(size[0], img.width);
        assertEquals(size[1], img.height);
        return img;
    }

    private static float[] slice(ReferenceFile ref, Map<String, Object> c) {
        long[] shape = JsonFields.longs(c.get("shape"), "shape");
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        int offset = (int) JsonFields.asLong(c.get("offset"), "offset");
        assertTrue("reference file is truncated", offset + n <= ref.values.length);
        float[] out = new float[(int) n];
        System.arraycopy(ref.values, offset, out, 0, (int) n);
        return out;
    }

    static double maxAbsDiff(float[] a, float[] b) {
        assertEquals("tensor sizes differ", a.length, b.length);
        double worst = 0;
        for (int i = 0; i < a.length; i++) {
            double d = Math.abs((double) a[i] - (double) b[i]);
            if (!(d <= worst)) {
                worst = d; // also catches NaN
            }
        }
        return worst;
    }

    @Test
    public void referenceHasCropAndTileCases() throws Exception {
        int crop = 0;
        int tiles = 0;
        for (Map<String, Object> c : cases(reference())) {
            if ("crop".equals(c.get("kind"))) {
                crop++;
            } else if ("tiles".equals(c.get("kind"))) {
                tiles++;
            }
        }
        assertTrue("expected at least 3 crop cases, got " + crop, crop >= 3);
        assertTrue("expected a tile case", tiles >= 1);
    }

    @Test
    public void cropPreprocessingMatchesEdgemlOnRealPhotos() throws Exception {
        ReferenceFile ref = reference();
        List<String> report = new ArrayList<String>();
        int checked = 0;
        for (Map<String, Object> c : cases(ref)) {
            if (!"crop".equals(c.get("kind"))) {
                continue;
            }
            @SuppressWarnings("unchecked")
            Preprocessing pre = Preprocessing.fromJson((Map<String, Object>) c.get("preprocessing"), "preprocessing");
            RgbImage img = image(c);
            float[] mine = pre.apply(img);
            float[] expected = slice(ref, c);
            assertArrayEquals(JsonFields.longs(c.get("shape"), "shape"),
                    new long[] {1, 3, pre.crop, pre.crop});
            double diff = maxAbsDiff(mine, expected);
            report.add(c.get("name") + ": max abs diff " + diff);
            assertTrue(c.get("name") + ": max abs diff " + diff + " > " + TOLERANCE, diff <= TOLERANCE);
            checked++;
        }
        assertTrue(checked >= 3);
        System.out.println("  preprocessing vs edgeml: " + report);
    }

    /** The comparison is sharp: being one pixel off in the resize is far outside the tolerance. */
    @Test
    public void anOffByOneResizeIsDetected() throws Exception {
        ReferenceFile ref = reference();
        Map<String, Object> c = cases(ref).get(0);
        @SuppressWarnings("unchecked")
        Preprocessing good = Preprocessing.fromJson((Map<String, Object>) c.get("preprocessing"), "preprocessing");
        Preprocessing off = new Preprocessing(good.resizeShorter + 1, good.crop,
                new double[] {good.mean[0], good.mean[1], good.mean[2]},
                new double[] {good.std[0], good.std[1], good.std[2]},
                good.interpolation, good.color, good.layout, good.scale, null);
        double diff = maxAbsDiff(off.apply(image(c)), slice(ref, c));
        assertTrue("off-by-one resize differs by only " + diff, diff > 0.05);
    }

    @Test
    public void tilesMatchEdgemlTileImage() throws Exception {
        ReferenceFile ref = reference();
        int checked = 0;
        for (Map<String, Object> c : cases(ref)) {
            if (!"tiles".equals(c.get("kind"))) {
                continue;
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> t = (Map<String, Object>) c.get("tiling");
            int tile = (int) JsonFields.asLong(t.get("tile"), "tile");
            int maxGrid = (int) JsonFields.asLong(t.get("max_grid"), "max_grid");
            String policy = (String) t.get("policy");
            double alpha = JsonFields.asDouble(t.get("alpha"), "alpha");
            RgbImage img = image(c);
            int[] grid = TileSelector.select(img.width, img.height, tile, policy, alpha,
                    TileSelector.candidates(maxGrid, 0));
            long[] expectedGrid = JsonFields.longs(t.get("grid"), "grid");
            assertEquals(expectedGrid[0], grid[0]);
            assertEquals(expectedGrid[1], grid[1]);
            Tiler.Tiled tiled = Tiler.tile(img, grid, tile, (int) JsonFields.asLong(t.get("pad_value"), "pad_value"),
                    Boolean.TRUE.equals(t.get("thumbnail")));
            double[] mean = JsonFields.doubles(t.get("mean"), "mean");
            double[] std = JsonFields.doubles(t.get("std"), "std");
            float[] meanF = {(float) mean[0], (float) mean[1], (float) mean[2]};
            float[] stdF = {(float) std[0], (float) std[1], (float) std[2]};
            float[] mine = Tiler.normalizeBatch(tiled.tiles, 0, tiled.numTiles(), meanF, stdF);
            float[] expected = slice(ref, c);
            assertArrayEquals(JsonFields.longs(c.get("shape"), "shape"),
                    new long[] {tiled.numTiles(), 3, tile, tile});
            double diff = maxAbsDiff(mine, expected);
            System.out.println("  tiles vs edgeml: " + c.get("name") + " grid " + grid[0] + "x" + grid[1]
                    + ", max abs diff " + diff);
            assertTrue(c.get("name") + ": max abs diff " + diff + " > " + TOLERANCE, diff <= TOLERANCE);
            checked++;
        }
        assertTrue(checked >= 1);
    }

    static String sha256(File f) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        InputStream in = new FileInputStream(f);
        try {
            byte[] buf = new byte[65536];
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
        } finally {
            in.close();
        }
        StringBuilder sb = new StringBuilder();
        for (byte b : md.digest()) {
            sb.append(String.format("%02x", b & 0xFF));
        }
        return sb.toString();
    }
}
