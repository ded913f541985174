package org.edgeml.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import org.junit.Test;

/** Properties of the resampler and the RGB conversion that hold whatever the reference file says. */
public class ImageMathTest {
    @Test
    public void constantImageStaysConstantAtAnySize() {
        float[] src = new float[2 * 37 * 53];
        Arrays.fill(src, 0, 37 * 53, 200f);
        Arrays.fill(src, 37 * 53, src.length, 3f);
        int[][] sizes = {{10, 10}, {100, 7}, {37, 200}, {1, 1}};
        for (int[] s : sizes) {
            float[] out = Resampler.resize(src, 2, 37, 53, s[0], s[1]);
            for (int i = 0; i < s[0] * s[1]; i++) {
                assertEquals(200f, out[i], 2e-4f);
                assertEquals(3f, out[s[0] * s[1] + i], 2e-5f);
            }
        }
    }

    @Test
    public void sameSizeIsACopy() {
        float[] src = {1, 2, 3, 4, 5, 6};
        assertArrayEquals(src, Resampler.resize(src, 1, 2, 3, 2, 3), 0f);
    }

    @Test
    public void halvingAveragesPairs() {
        // 4 -> 2 with antialiasing: support 2, so output 0 (centre 1.0) takes samples 0..2 with
        // triangle weights 0.75, 0.75, 0.25 (sum 1.75); torch gives 14.2857 and 85.7143.
        float[] src = {0, 0, 100, 100};
        float[] out = Resampler.resize(src, 1, 1, 4, 1, 2);
        assertEquals(100f * 0.25f / 1.75f, out[0], 1e-4f);
        assertEquals(100f * 1.5f / 1.75f, out[1], 1e-4f);
    }

    @Test
    public void weightsAreNormalized() {
        int[][] pairs = {{500, 224}, {191, 256}, {4032, 384}, {3, 1000}};
        for (int[] p : pairs) {
            Resampler.AxisWeights w = Resampler.axisWeights(p[0], p[1]);
            for (int i = 0; i < p[1]; i++) {
                float sum = 0;
                for (int j = 0; j < w.count[i]; j++) {
                    sum += w.weights[i * w.maxTaps + j];
                }
                assertEquals(1f, sum, 1e-5f);
                assertTrue(w.start[i] >= 0 && w.start[i] + w.count[i] <= p[0]);
            }
        }
    }

    @Test
    public void shorterSideResizeRoundsHalfUp() {
        Preprocessing p = new Preprocessing(256, 224, new double[] {0, 0, 0}, new double[] {1, 1, 1},
                "bilinear-antialias", "RGB", "NCHW", 1.0 / 255, null);
        assertArrayEquals(new int[] {379, 256}, p.resizedSize(741, 500));
        assertArrayEquals(new int[] {256, 379}, p.resizedSize(500, 741));
        assertArrayEquals(new int[] {256, 256}, p.resizedSize(300, 300));
        // 3 * 256 / 2 = 384 exactly; 5 * 256 / 2 = 640.
        assertArrayEquals(new int[] {384, 256}, p.resizedSize(3, 2));
    }

    @Test
    public void alphaIsCompositedOnBlack() {
        int[] argb = {0xFF102030, 0x80FF8000, 0x00FFFFFF};
        RgbImage img = RgbImage.fromArgb(argb, 3, 1);
        assertEquals(0x10, img.get(0, 0, 0));
        // 255 * 128/255 = 128; 128 * 128/255 = 64.25 -> 64.
        assertEquals(128, img.get(1, 0, 0));
        assertEquals(64, img.get(1, 0, 1));
        assertEquals(0, img.get(2, 0, 2));
        RgbImage g = RgbImage.fromGray16(new int[] {0, 65535, 32896}, 3, 1);
        assertEquals(255, g.get(1, 0, 1));
        assertEquals(128, g.get(2, 0, 0));
    }
}
