package org.edgeml.demo;

import android.content.ContentResolver;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import java.io.IOException;
import java.io.InputStream;
import org.edgeml.demo.core.RgbImage;

/** Decoding on the phone: Bitmap -> {@link RgbImage} with edgeml's conversion rules. */
final class AndroidImages {
    /** Larger images would not fit the float buffers of the exact resize in a phone's heap. */
    static final long MAX_PIXELS = 50_000_000L;

    private AndroidImages() {
    }

    static RgbImage decode(InputStream in, String what) throws IOException {
        BitmapFactory.Options opts = new BitmapFactory.Options();
        opts.inPreferredConfig = Bitmap.Config.ARGB_8888;
        // Straight (non-premultiplied) alpha, so compositing on black matches edgeml bit for bit.
        opts.inPremultiplied = false;
        opts.inScaled = false;
        Bitmap bmp = BitmapFactory.decodeStream(in, null, opts);
        if (bmp == null) {
            throw new IOException(what + " is not an image Android can decode");
        }
        try {
            return fromBitmap(bmp);
        } finally {
            bmp.recycle();
        }
    }

    static RgbImage decode(ContentResolver resolver, Uri uri) throws IOException {
        InputStream in = resolver.openInputStream(uri);
        if (in == null) {
            throw new IOException("cannot open " + uri);
        }
        try {
            return decode(in, uri.toString());
        } finally {
            in.close();
        }
    }

    static RgbImage fromBitmap(Bitmap bmp) throws IOException {
        int w = bmp.getWidth();
        int h = bmp.getHeight();
        if ((long) w * h > MAX_PIXELS) {
            throw new IOException("image is " + w + "x" + h + "; this demo takes at most " + MAX_PIXELS / 1_000_000 + " megapixels");
        }
        byte[] rgb = new byte[w * h * 3];
        int[] row = new int[w];
        for (int y = 0; y < h; y++) {
            bmp.getPixels(row, 0, w, 0, y, w, 1);
            // Row by row, through the same conversion the JVM tests check.
            RgbImage line = RgbImage.fromArgb(row, w, 1);
            System.arraycopy(line.rgb, 0, rgb, y * w * 3, w * 3);
        }
        return new RgbImage(w, h, rgb);
    }

    /** A preview-sized Bitmap of an RgbImage (for display only; never fed to the model). */
    static Bitmap preview(RgbImage img, int maxSide) {
        int step = Math.max(1, Math.max(img.width, img.height) / Math.max(1, maxSide));
        int w = Math.max(1, img.width / step);
        int h = Math.max(1, img.height / step);
        int[] px = new int[w * h];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int sx = x * step;
                int sy = y * step;
                px[y * w + x] = 0xFF000000 | (img.get(sx, sy, 0) << 16) | (img.get(sx, sy, 1) << 8) | img.get(sx, sy, 2);
            }
        }
        return Bitmap.createBitmap(px, w, h, Bitmap.Config.ARGB_8888);
    }
}
