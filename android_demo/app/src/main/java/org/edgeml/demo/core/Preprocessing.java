package org.edgeml.demo.core;

import java.util.Map;

/**
 * How an RGB image becomes the model's input tensor: the manifest's "preprocessing" entry
 * ({@code edgeml.images.Preprocessing.to_dict()}), reproduced to 1e-5 after normalization.
 *
 * <ol>
 *   <li>resize with {@link Resampler} so that the shorter side becomes resize_shorter and the
 *       longer side floor(long * resize_shorter / short + 0.5);</li>
 *   <li>center crop crop x crop at offsets ((size - crop) / 2) (integer division);</li>
 *   <li>(x * scale - mean) / std per channel in float32; NCHW.</li>
 * </ol>
 * A tile encoder's manifest adds {@link TilingSpec} under "tiling"; its tiles are normalized with
 * the same mean and std (see {@link Tiler}).
 */
public final class Preprocessing {
    public final int resizeShorter;
    public final int crop;
    public final float[] mean;
    public final float[] std;
    public final String interpolation;
    public final String color;
    public final String layout;
    public final double scale;
    /** Null unless the artifact is a tile encoder. */
    public final TilingSpec tiling;

    public Preprocessing(int resizeShorter, int crop, double[] mean, double[] std, String interpolation,
                         String color, String layout, double scale, TilingSpec tiling) {
        if (resizeShorter < 1 || crop < 1) {
            throw new ManifestException("preprocessing.resize_shorter and crop must be >= 1, got "
                    + resizeShorter + " and " + crop);
        }
        if (crop > resizeShorter) {
            throw new ManifestException("preprocessing.crop (" + crop + ") is larger than resize_shorter (" + resizeShorter + ")");
        }
        if (mean.length != 3 || std.length != 3) {
            throw new ManifestException("preprocessing.mean and std must have 3 values (RGB)");
        }
        for (double s : std) {
            if (!(s > 0)) {
                throw new ManifestException("preprocessing.std values must be > 0, got " + s);
            }
        }
        if (!"bilinear-antialias".equals(interpolation)) {
            throw new ManifestException("preprocessing.interpolation \"" + interpolation
                    + "\" is not supported by this app (it implements bilinear-antialias)");
        }
        if (!"RGB".equals(color)) {
            throw new ManifestException("preprocessing.color \"" + color + "\" is not supported (RGB only)");
        }
        if (!"NCHW".equals(layout)) {
            throw new ManifestException("preprocessing.layout \"" + layout + "\" is not supported (NCHW only)");
        }
        this.resizeShorter = resizeShorter;
        this.crop = crop;
        // torch.tensor(list of floats) is float32, so the normalization runs in float32.
        this.mean = new float[] {(float) mean[0], (float) mean[1], (float) mean[2]};
        this.std = new float[] {(float) std[0], (float) std[1], (float) std[2]};
        this.interpolation = interpolation;
        this.color = color;
        this.layout = layout;
        this.scale = scale;
        this.tiling = tiling;
    }

    static Preprocessing fromJson(Map<String, Object> p, String path) {
        int resizeShorter = (int) JsonFields.integer(p, "resize_shorter", path);
        int crop = (int) JsonFields.integer(p, "crop", path);
        double[] mean = JsonFields.doubles(JsonFields.require(p, "mean", path), path + ".mean");
        double[] std = JsonFields.doubles(JsonFields.require(p, "std", path), path + ".std");
        String interpolation = JsonFields.optString(p, "interpolation", path, "bilinear-antialias");
        String color = JsonFields.optString(p, "color", path, "RGB");
        String layout = JsonFields.optString(p, "layout", path, "NCHW");
        double scale = JsonFields.optNumber(p, "scale", path, 1.0 / 255.0);
        Map<String, Object> t = JsonFields.optObject(p, "tiling", path);
        TilingSpec tiling = t == null ? null : TilingSpec.fromJson(t, path + ".tiling");
        return new Preprocessing(resizeShorter, crop, mean, std, interpolation, color, layout, scale, tiling);
    }

    /** {width, height} after the shorter-side resize. */
    public int[] resizedSize(int width, int height) {
        boolean portrait = width <= height;
        int shortSide = portrait ? width : height;
        int longSide = portrait ? height : width;
        int newLong = (int) Math.floor((double) longSide * resizeShorter / shortSide + 0.5);
        return portrait ? new int[] {resizeShorter, newLong} : new int[] {newLong, resizeShorter};
    }

    /** A new (1, 3, crop, crop) float32 tensor's data, NCHW. */
    public float[] apply(RgbImage img) {
        float[] out = new float[3 * crop * crop];
        applyInto(img, out, 0);
        return out;
    }

    /** Write the 3 x crop x crop NCHW values of img into dst starting at offset. */
    public void applyInto(RgbImage img, float[] dst, int offset) {
        int[] size = resizedSize(img.width, img.height);
        int newW = size[0];
        int newH = size[1];
        if (newW < crop || newH < crop) {
            throw new IllegalArgumentException("image resized to " + newW + "x" + newH + " is smaller than the "
                    + crop + " crop");
        }
        int top = (newH - crop) / 2;
        int left = (newW - crop) / 2;
        float s = (float) scale;
        // One channel at a time keeps the float copy of a 12-megapixel photo at 48 MB, not 144.
        for (int c = 0; c < 3; c++) {
            float[] plane = Resampler.toPlane(img, c);
            if (newW != img.width || newH != img.height) {
                plane = Resampler.resize(plane, 1, img.height, img.width, newH, newW);
            }
            float m = mean[c];
            float sd = std[c];
            int outPlane = offset + c * crop * crop;
            for (int y = 0; y < crop; y++) {
                int srcRow = (top + y) * newW + left;
                int dstRow = outPlane + y * crop;
                for (int x = 0; x < crop; x++) {
                    dst[dstRow + x] = (plane[srcRow + x] * s - m) / sd;
                }
            }
        }
    }
}
