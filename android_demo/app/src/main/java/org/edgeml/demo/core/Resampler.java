package org.edgeml.demo.core;

/**
 * Separable bilinear resampling with antialiasing, reproducing PyTorch's CPU
 * {@code interpolate(mode="bilinear", antialias=True, align_corners=False)} on float32 pixels
 * (the filter {@code edgeml.images} uses, and Pillow's BILINEAR resize in float).
 *
 * <p>Per output index i along an axis of in -&gt; out samples: scale = in / out (float);
 * support = scale when downscaling, else 1; center = scale * (i + 0.5); the taps are the input
 * samples xmin .. xmin + xsize - 1 with xmin = max(int(center - support + 0.5), 0) and
 * xmax = min(int(center + support + 0.5), in); each tap j weighs
 * triangle((j - center + 0.5) / max(scale, 1)) and the weights are normalized to sum to 1.
 * The width is resampled first, then the height, each output accumulated in float in tap order,
 * as PyTorch does; the weight arithmetic follows its float/double promotions so that the chosen
 * taps are the same.
 */
public final class Resampler {
    private Resampler() {
    }

    /** Taps and weights for one axis. */
    static final class AxisWeights {
        final int[] start;
        final int[] count;
        final float[] weights; // out * maxTaps, row i holds the weights of output i
        final int maxTaps;

        AxisWeights(int[] start, int[] count, float[] weights, int maxTaps) {
            this.start = start;
            this.count = count;
            this.weights = weights;
            this.maxTaps = maxTaps;
        }
    }

    static AxisWeights axisWeights(int inSize, int outSize) {
        float scale = (float) inSize / (float) outSize;
        float support = scale >= 1.0f ? (float) (1.0 * scale) : 1.0f;
        int maxTaps = (int) Math.ceil(support) * 2 + 1;
        float invScale = scale >= 1.0f ? (float) (1.0 / scale) : 1.0f;
        int[] start = new int[outSize];
        int[] count = new int[outSize];
        float[] weights = new float[outSize * maxTaps];
        for (int i = 0; i < outSize; i++) {
            float center = (float) (scale * (i + 0.5));
            // float - float, then + 0.5 in double, truncated toward zero like a C++ cast.
            long xmin = Math.max((long) (center - support + 0.5), 0L);
            long xsize = Math.min((long) (center + support + 0.5), (long) inSize) - xmin;
            xsize = Math.max(0L, Math.min(xsize, (long) maxTaps));
            float total = 0.0f;
            int row = i * maxTaps;
            for (int j = 0; j < xsize; j++) {
                float x = (float) (((j + xmin) - center + 0.5) * invScale);
                float w = triangle(x);
                weights[row + j] = w;
                total += w;
            }
            if (total != 0.0f) {
                for (int j = 0; j < xsize; j++) {
                    weights[row + j] /= total;
                }
            }
            start[i] = (int) xmin;
            count[i] = (int) xsize;
        }
        return new AxisWeights(start, count, weights, maxTaps);
    }

    private static float triangle(float x) {
        float a = Math.abs(x);
        return a < 1.0f ? (float) (1.0 - a) : 0.0f;
    }

    /**
     * Resize planar float data: {@code planes} channels of inH x inW, row-major, channel after
     * channel. Returns planes x outH x outW. An axis whose size does not change is copied.
     */
    public static float[] resize(float[] src, int planes, int inH, int inW, int outH, int outW) {
        if (inH < 1 || inW < 1 || outH < 1 || outW < 1) {
            throw new IllegalArgumentException("sizes must be positive: " + inW + "x" + inH + " -> " + outW + "x" + outH);
        }
        if (src.length != (long) planes * inH * inW) {
            throw new IllegalArgumentException("expected " + ((long) planes * inH * inW) + " samples, got " + src.length);
        }
        float[] cur = src;
        int curW = inW;
        if (outW != inW) {
            AxisWeights ax = axisWeights(inW, outW);
            float[] dst = new float[planes * inH * outW];
            for (int p = 0; p < planes; p++) {
                for (int y = 0; y < inH; y++) {
                    int srcRow = (p * inH + y) * inW;
                    int dstRow = (p * inH + y) * outW;
                    for (int x = 0; x < outW; x++) {
                        int s = srcRow + ax.start[x];
                        int wrow = x * ax.maxTaps;
                        float acc = cur[s] * ax.weights[wrow];
                        for (int j = 1; j < ax.count[x]; j++) {
                            acc += cur[s + j] * ax.weights[wrow + j];
                        }
                        dst[dstRow + x] = acc;
                    }
                }
            }
            cur = dst;
            curW = outW;
        }
        if (outH != inH) {
            AxisWeights ay = axisWeights(inH, outH);
            float[] dst = new float[planes * outH * curW];
            for (int p = 0; p < planes; p++) {
                int plane = p * inH * curW;
                for (int y = 0; y < outH; y++) {
                    int wrow = y * ay.maxTaps;
                    int s0 = plane + ay.start[y] * curW;
                    int dstRow = (p * outH + y) * curW;
                    int taps = ay.count[y];
                    for (int x = 0; x < curW; x++) {
                        float acc = cur[s0 + x] * ay.weights[wrow];
                        for (int j = 1; j < taps; j++) {
                            acc += cur[s0 + j * curW + x] * ay.weights[wrow + j];
                        }
                        dst[dstRow + x] = acc;
                    }
                }
            }
            cur = dst;
        }
        return cur == src ? src.clone() : cur;
    }

    /** Channel c (0 R, 1 G, 2 B) of the image as a float plane of 0..255 values. */
    public static float[] toPlane(RgbImage img, int c) {
        int n = img.width * img.height;
        float[] plane = new float[n];
        byte[] rgb = img.rgb;
        for (int i = 0; i < n; i++) {
            plane[i] = rgb[i * 3 + c] & 0xFF;
        }
        return plane;
    }

    /** Resize an 8-bit image with this filter, rounding half up to 8 bits ({@code edgeml.dynres.resize_rgb8}). */
    public static RgbImage resizeRgb8(RgbImage img, int outW, int outH) {
        if (outW == img.width && outH == img.height) {
            return new RgbImage(outW, outH, img.rgb.clone());
        }
        int n = outW * outH;
        byte[] out = new byte[3 * n];
        for (int c = 0; c < 3; c++) {
            float[] plane = resize(toPlane(img, c), 1, img.height, img.width, outH, outW);
            for (int i = 0; i < n; i++) {
                float v = (float) Math.floor(plane[i] + 0.5f);
                out[i * 3 + c] = (byte) Math.max(0f, Math.min(255f, v));
            }
        }
        return new RgbImage(outW, outH, out);
    }
}
