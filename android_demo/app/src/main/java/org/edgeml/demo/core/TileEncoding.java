package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.List;

/**
 * The BlueLM-V front end for one image: select the grid by the manifest's policy, cut the tiles
 * and the thumbnail, and run them through the tile encoder in the manifest's batch size, timing
 * each batch. A program with a fixed batch gets its last batch filled up with zero tiles (their
 * outputs are dropped); one with a dynamic batch axis gets a smaller remainder batch.
 */
public final class TileEncoding {
    public final int[] grid;
    public final int numTiles;
    /** Real tiles per encoder call. */
    public final int[] batches;
    /** Padding tiles added to each call (non-zero only for the last call of a fixed-batch program). */
    public final int[] padding;
    public final double[] batchLatencyMs;
    public final long tokensPerTile;
    public final long totalTokens;
    public final long[] outputShape;

    private TileEncoding(int[] grid, int numTiles, int[] batches, int[] padding, double[] batchLatencyMs,
                         long tokensPerTile, long[] outputShape) {
        this.grid = grid;
        this.numTiles = numTiles;
        this.batches = batches;
        this.padding = padding;
        this.batchLatencyMs = batchLatencyMs;
        this.tokensPerTile = tokensPerTile;
        this.totalTokens = tokensPerTile * numTiles;
        this.outputShape = outputShape;
    }

    public static TileEncoding run(Manifest manifest, RgbImage image, ModelRunner runner,
                                   LatencyBenchmark.Clock clock) throws Exception {
        if (!manifest.isTileEncoder()) {
            throw new ManifestException("manifest " + manifest.modelName + " has no preprocessing.tiling: not a tile encoder");
        }
        Preprocessing pre = manifest.preprocessing;
        TilingSpec spec = pre.tiling;
        int[] grid = TileSelector.select(image.width, image.height, spec);
        Tiler.Tiled tiled = Tiler.tile(image, grid, spec.tile, 0, spec.thumbnail);
        int n = tiled.numTiles();

        boolean dynamic = manifest.dynamicBatch();
        int programBatch = dynamic ? Math.min(spec.batch, manifest.maxInputBatch()) : manifest.maxInputBatch();
        if (programBatch < 1) {
            throw new ManifestException("input " + manifest.inputs[0].name + " has batch " + programBatch);
        }
        int[] plan = Tiler.planBatches(n, programBatch);
        int[] padding = new int[plan.length];
        if (!dynamic && plan.length > 0) {
            padding[plan.length - 1] = Tiler.paddedTiles(n, programBatch);
        }
        double[] latency = new double[plan.length];
        long tokensPerTile = 0;
        long[] outShape = new long[0];
        int start = 0;
        List<RgbImage> tiles = new ArrayList<RgbImage>(tiled.tiles);
        RgbImage blank = new RgbImage(spec.tile, spec.tile, new byte[spec.tile * spec.tile * 3]);
        for (int b = 0; b < plan.length; b++) {
            int real = plan[b];
            int size = real + padding[b];
            List<RgbImage> chunk = new ArrayList<RgbImage>(tiles.subList(start, start + real));
            for (int i = 0; i < padding[b]; i++) {
                chunk.add(blank);
            }
            float[] data = Tiler.normalizeBatch(chunk, 0, size, pre.mean, pre.std);
            TensorData input = new TensorData(data, manifest.imageInputShape(size));
            long t0 = clock.nanoTime();
            TensorData out = runner.forward(input);
            latency[b] = (clock.nanoTime() - t0) / 1.0e6;
            if (out.shape.length == 0 || out.shape[0] != size) {
                throw new IllegalStateException("the tile encoder returned shape " + TensorData.shapeString(out.shape)
                        + " for a batch of " + size + "; was it exported for another batch size?");
            }
            long perTile = out.shape.length >= 3 ? out.shape[1] : 1;
            if (b == 0) {
                tokensPerTile = perTile;
                outShape = out.shape;
            } else if (perTile != tokensPerTile) {
                throw new IllegalStateException("token count per tile changed between batches");
            }
            start += real;
        }
        return new TileEncoding(tiled.grid, n, plan, padding, latency, tokensPerTile, outShape);
    }
}
