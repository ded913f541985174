package org.edgeml.demo.core;

/**
 * An 8-bit RGB image, row-major and interleaved (R, G, B per pixel), as {@code edgeml.images}
 * produces after decoding: the conversion rules (alpha composited on black, grayscale replicated,
 * 16-bit samples scaled by 255/65535) are those of {@code edgeml.images.to_rgb8}.
 */
public final class RgbImage {
    public final int width;
    public final int height;
    /** width * height * 3 bytes, read as unsigned. */
    public final byte[] rgb;

    public RgbImage(int width, int height, byte[] rgb) {
        if (width < 1 || height < 1) {
            throw new IllegalArgumentException("image has no pixels (" + width + "x" + height + ")");
        }
        if (rgb.length != (long) width * height * 3) {
            throw new IllegalArgumentException("expected " + ((long) width * height * 3) + " RGB bytes, got " + rgb.length);
        }
        this.width = width;
        this.height = height;
        this.rgb = rgb;
    }

    /** Channel c (0 R, 1 G, 2 B) of pixel (x, y), 0..255. */
    public int get(int x, int y, int c) {
        return rgb[(y * width + x) * 3 + c] & 0xFF;
    }

    /**
     * From non-premultiplied ARGB colour ints (Android's Bitmap.getPixels, java.awt's getRGB):
     * alpha is composited on black, {@code floor(c * (a / 255) + 0.5)} in double as edgeml does.
     */
    public static RgbImage fromArgb(int[] argb, int width, int height) {
        if (argb.length != (long) width * height) {
            throw new IllegalArgumentException("expected " + ((long) width * height) + " pixels, got " + argb.length);
        }
        byte[] out = new byte[argb.length * 3];
        for (int i = 0; i < argb.length; i++) {
            int p = argb[i];
            int a = (p >>> 24) & 0xFF;
            int r = (p >> 16) & 0xFF;
            int g = (p >> 8) & 0xFF;
            int b = p & 0xFF;
            if (a != 255) {
                double k = a / 255.0;
                r = composite(r, k);
                g = composite(g, k);
                b = composite(b, k);
            }
            out[i * 3] = (byte) r;
            out[i * 3 + 1] = (byte) g;
            out[i * 3 + 2] = (byte) b;
        }
        return new RgbImage(width, height, out);
    }

    private static int composite(int c, double k) {
        double v = Math.floor(c * k + 0.5);
        return (int) Math.max(0, Math.min(255, v));
    }

    /** From 8-bit gray samples, replicated into the three channels. */
    public static RgbImage fromGray8(byte[] gray, int width, int height) {
        if (gray.length != (long) width * height) {
            throw new IllegalArgumentException("expected " + ((long) width * height) + " gray samples, got " + gray.length);
        }
        byte[] out = new byte[gray.length * 3];
        for (int i = 0; i < gray.length; i++) {
            out[i * 3] = gray[i];
            out[i * 3 + 1] = gray[i];
            out[i * 3 + 2] = gray[i];
        }
        return new RgbImage(width, height, out);
    }

    /** From 16-bit gray samples (0..65535): {@code floor(v * 255 / 65535 + 0.5)}, replicated. */
    public static RgbImage fromGray16(int[] gray, int width, int height) {
        if (gray.length != (long) width * height) {
            throw new IllegalArgumentException("expected " + ((long) width * height) + " gray samples, got " + gray.length);
        }
        byte[] out = new byte[gray.length * 3];
        double k = 255.0 / 65535.0;
        for (int i = 0; i < gray.length; i++) {
            int v = (int) Math.max(0, Math.min(255, Math.floor(gray[i] * k + 0.5)));
            out[i * 3] = (byte) v;
            out[i * 3 + 1] = (byte) v;
            out[i * 3 + 2] = (byte) v;
        }
        return new RgbImage(width, height, out);
    }
}
