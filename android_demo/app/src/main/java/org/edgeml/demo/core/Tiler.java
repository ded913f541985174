package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Cuts an image into a grid of tiles plus a global thumbnail, as {@code edgeml.dynres.tile_image}
 * does: resize keeping the aspect ratio to fit the (tile * m) x (tile * n) canvas, centre it on a
 * canvas filled with the pad value, cut the m * n tiles row-major (left to right, then top to
 * bottom) and append the whole image stretched to tile x tile. Resizing uses {@link Resampler}
 * and rounds half up to 8 bits; tiles are normalized as (x / 255 - mean) / std in float32.
 */
public final class Tiler {
    private Tiler() {
    }

    /** The tiles of one image. */
    public static final class Tiled {
        public final int[] grid;
        public final int tile;
        /** m * n local tiles, then the thumbnail when there is one. */
        public final List<RgbImage> tiles;
        public final boolean hasThumbnail;
        /** {left, top, width, height} of the resized image on the canvas. */
        public final int[] contentBox;

        Tiled(int[] grid, int tile, List<RgbImage> tiles, boolean hasThumbnail, int[] contentBox) {
            this.grid = grid;
            this.tile = tile;
            this.tiles = tiles;
            this.hasThumbnail = hasThumbnail;
            this.contentBox = contentBox;
        }

        public int numTiles() {
            return tiles.size();
        }
    }

    public static Tiled tile(RgbImage img, int[] grid, int tile, int padValue, boolean thumbnail) {
        int m = grid[0];
        int n = grid[1];
        if (m < 1 || n < 1 || tile < 1) {
            throw new IllegalArgumentException("grid and tile must be positive");
        }
        if (padValue < 0 || padValue > 255) {
            throw new IllegalArgumentException("pad value must be in 0..255, got " + padValue);
        }
        int canvasW = tile * m;
        int canvasH = tile * n;
        double scale = Math.min((double) canvasW / img.width, (double) canvasH / img.height);
        int newW = (int) Math.min(Math.max((long) Math.floor(img.width * scale + 0.5), 1L), (long) canvasW);
        int newH = (int) Math.min(Math.max((long) Math.floor(img.height * scale + 0.5), 1L), (long) canvasH);
        int left = (canvasW - newW) / 2;
        int top = (canvasH - newH) / 2;
        RgbImage resized = Resampler.resizeRgb8(img, newW, newH);

        List<RgbImage> tiles = new ArrayList<RgbImage>();
        byte pad = (byte) padValue;
        for (int ty = 0; ty < n; ty++) {
            for (int tx = 0; tx < m; tx++) {
                byte[] px = new byte[tile * tile * 3];
                for (int y = 0; y < tile; y++) {
                    int cy = ty * tile + y - top;
                    for (int x = 0; x < tile; x++) {
                        int cx = tx * tile + x - left;
                        int d = (y * tile + x) * 3;
                        if (cy >= 0 && cy < newH && cx >= 0 && cx < newW) {
                            int s = (cy * newW + cx) * 3;
                            px[d] = resized.rgb[s];
                            px[d + 1] = resized.rgb[s + 1];
                            px[d + 2] = resized.rgb[s + 2];
                        } else {
                            px[d] = pad;
                            px[d + 1] = pad;
                            px[d + 2] = pad;
                        }
                    }
                }
                tiles.add(new RgbImage(tile, tile, px));
            }
        }
        if (thumbnail) {
            tiles.add(Resampler.resizeRgb8(img, tile, tile));
        }
        return new Tiled(new int[] {m, n}, tile, tiles, thumbnail, new int[] {left, top, newW, newH});
    }

    /** Tiles [from, from + count) as one (count, 3, tile, tile) NCHW float32 batch. */
    public static float[] normalizeBatch(List<RgbImage> tiles, int from, int count, float[] mean, float[] std) {
        if (count < 1 || from < 0 || from + count > tiles.size()) {
            throw new IllegalArgumentException("tiles " + from + ".." + (from + count) + " out of " + tiles.size());
        }
        int t = tiles.get(from).width;
        int hw = t * t;
        float[] out = new float[count * 3 * hw];
        for (int k = 0; k < count; k++) {
            RgbImage img = tiles.get(from + k);
            if (img.width != t || img.height != t) {
                throw new IllegalArgumentException("tiles differ in size");
            }
            for (int c = 0; c < 3; c++) {
                int base = (k * 3 + c) * hw;
                for (int i = 0; i < hw; i++) {
                    float x = img.rgb[i * 3 + c] & 0xFF;
                    out[base + i] = (x / 255.0f - mean[c]) / std[c];
                }
            }
        }
        return out;
    }

    /**
     * Batch sizes for n tiles through an encoder that takes batch tiles per call: full batches and
     * a smaller remainder when the program's batch axis is dynamic ([4, 4, 1] for 9), otherwise
     * full batches only, the last one padded ({@link #paddedTiles}).
     */
    public static int[] planBatches(int nTiles, int batch) {
        if (nTiles < 0 || batch < 1) {
            throw new IllegalArgumentException("need nTiles >= 0 and batch >= 1");
        }
        int full = nTiles / batch;
        int rest = nTiles % batch;
        int[] plan = new int[full + (rest > 0 ? 1 : 0)];
        for (int i = 0; i < full; i++) {
            plan[i] = batch;
        }
        if (rest > 0) {
            plan[full] = rest;
        }
        return plan;
    }

    /** Zero tiles needed to fill the last batch of a fixed-batch program. */
    public static int paddedTiles(int nTiles, int batch) {
        int rest = nTiles % batch;
        return rest == 0 ? 0 : batch - rest;
    }
}
