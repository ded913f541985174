package org.edgeml.demo.core;

/**
 * Classify one image with a manifest-described model: preprocess, warm up, time N runs, rank the
 * logits of the last run. Free of Android so that the JVM tests drive it with a fake runner.
 */
public final class Classification {
    public final TopK.Entry[] top;
    public final LatencyStats latency;
    public final double preprocessMs;
    public final long[] outputShape;

    private Classification(TopK.Entry[] top, LatencyStats latency, double preprocessMs, long[] outputShape) {
        this.top = top;
        this.latency = latency;
        this.preprocessMs = preprocessMs;
        this.outputShape = outputShape;
    }

    public static Classification run(Manifest manifest, RgbImage image, final ModelRunner runner, int warmup,
                                     int iterations, int k, LatencyBenchmark.Clock clock) throws Exception {
        if (manifest.preprocessing == null) {
            throw new ManifestException("manifest " + manifest.modelName + " has no preprocessing: it does not take an image");
        }
        // A program exported for a fixed batch N gets the image N times; its first row is ranked.
        int batch = manifest.dynamicBatch() ? 1 : Math.max(1, manifest.maxInputBatch());
        long t0 = clock.nanoTime();
        float[] pixels = manifest.preprocessing.apply(image);
        double preprocessMs = (clock.nanoTime() - t0) / 1.0e6;
        if (batch > 1) {
            float[] repeated = new float[pixels.length * batch];
            for (int b = 0; b < batch; b++) {
                System.arraycopy(pixels, 0, repeated, b * pixels.length, pixels.length);
            }
            pixels = repeated;
        }
        final TensorData input = new TensorData(pixels, manifest.imageInputShape(batch));
        final TensorData[] last = new TensorData[1];
        LatencyStats stats = LatencyBenchmark.measure(new LatencyBenchmark.Task() {
            @Override
            public void run() throws Exception {
                last[0] = runner.forward(input);
            }
        }, warmup, iterations, clock);
        TensorData out = last[0];
        float[] scores = out.data;
        // (batch, classes) logits with batch > 1 (a fixed-batch program): rank the first row.
        if (out.shape.length >= 2 && out.shape[0] > 1) {
            int row = (int) (out.data.length / out.shape[0]);
            float[] first = new float[row];
            System.arraycopy(out.data, 0, first, 0, row);
            scores = first;
        }
        return new Classification(TopK.topK(scores, k), stats, preprocessMs, out.shape);
    }
}
