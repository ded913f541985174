package org.edgeml.demo.core;

import java.awt.image.BufferedImage;
import java.awt.image.ColorModel;
import java.awt.image.IndexColorModel;
import java.awt.image.Raster;
import java.io.File;
import java.io.IOException;
import javax.imageio.ImageIO;

/**
 * Decodes an image file on a plain JVM (javax.imageio, since Android's Bitmap is not available
 * here) into an {@link RgbImage} with edgeml's conversion rules, reading the raw samples of the
 * raster so that no colour management touches them (PIL does none either).
 * Supports 8-bit gray / gray+alpha / RGB / RGBA / palette and 16-bit gray, which covers
 * the PNG photos the tests use; lossy JPEG decoding differs between decoders and is not
 * compared.
 */
final class JvmImages {
    private JvmImages() {
    }

    static RgbImage read(File file) throws IOException {
        BufferedImage img = ImageIO.read(file);
        if (img == null) {
            throw new IOException(file + " is not an image javax.imageio can decode");
        }
        int w = img.getWidth();
        int h = img.getHeight();
        Raster r = img.getRaster();
        ColorModel cm = img.getColorModel();
        int bands = r.getNumBands();
        int bits = r.getSampleModel().getSampleSize(0);
        if (cm instanceof IndexColorModel) {
            IndexColorModel icm = (IndexColorModel) cm;
            int[] argb = new int[w * h];
            int[] px = new int[1];
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    r.getPixel(x, y, px);
                    argb[y * w + x] = icm.getRGB(px[0]);
                }
            }
            return RgbImage.fromArgb(argb, w, h);
        }
        if (bands == 1 && bits == 16) {
            int[] gray = r.getSamples(0, 0, w, h, 0, (int[]) null);
            return RgbImage.fromGray16(gray, w, h);
        }
        if (bits != 8) {
            throw new IOException(file + ": " + bits + "-bit samples with " + bands + " bands are not supported by this test helper");
        }
        int[] argb = new int[w * h];
        int[] px = new int[bands];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                r.getPixel(x, y, px);
                int a = 255;
                int cr;
                int cg;
                int cb;
                if (bands == 1 || bands == 2) {
                    cr = cg = cb = px[0];
                    if (bands == 2) {
                        a = px[1];
                    }
                } else if (bands == 3 || bands == 4) {
                    cr = px[0];
                    cg = px[1];
                    cb = px[2];
                    if (bands == 4) {
                        a = px[3];
                    }
                } else {
                    throw new IOException(file + ": " + bands + " bands are not supported");
                }
                argb[y * w + x] = (a << 24) | (cr << 16) | (cg << 8) | cb;
            }
        }
        return RgbImage.fromArgb(argb, w, h);
    }
}
