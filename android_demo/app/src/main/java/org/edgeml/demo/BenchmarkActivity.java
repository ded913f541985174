package org.edgeml.demo;

import android.app.Activity;
import android.app.ActivityManager;
import android.content.Context;
import android.content.Intent;
import android.os.Build;
import android.os.Bundle;
import android.os.Debug;
import android.util.Log;
import android.widget.TextView;
import java.io.File;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.List;
import org.edgeml.demo.core.ArtifactFolder;
import org.edgeml.demo.core.BenchmarkReport;
import org.edgeml.demo.core.BenchmarkRun;
import org.edgeml.demo.core.DeviceInfo;
import org.edgeml.demo.core.LatencyBenchmark;
import org.edgeml.demo.core.Manifest;
import org.edgeml.demo.core.RgbImage;
import org.edgeml.demo.core.TensorData;
import org.edgeml.demo.core.Tiler;
import org.edgeml.demo.core.TileSelector;

/**
 * Benchmark mode, driven by intent extras the way ExecuTorch's benchmark app is:
 * <pre>
 * adb shell am start -W -S -n org.edgeml.demo/.BenchmarkActivity \
 *     --es model_dir /data/local/tmp/edgeml --ei num_iter 50 --ei num_warm_up_iter 10
 * adb shell run-as org.edgeml.demo cat files/benchmark_results.json
 * </pre>
 * It loads the first .pte of model_dir (default: the app's assets), feeds the bundled sample photo
 * preprocessed as its manifest says (no manifest: the runtime's default inputs), and writes the
 * results in the benchmark app's JSON schema, then finishes.
 */
public class BenchmarkActivity extends Activity {
    private static final String TAG = "edgeml-bench";
    static final String RESULTS_FILE = "benchmark_results.json";

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        final TextView status = new TextView(this);
        status.setText(R.string.benchmarking);
        setContentView(status);
        Intent intent = getIntent();
        final String modelDir = intent.getStringExtra("model_dir");
        final int iterations = Math.max(1, intent.getIntExtra("num_iter", 50));
        final int warmup = Math.max(0, intent.getIntExtra("num_warm_up_iter", 10));
        final int threads = intent.getIntExtra("num_threads", 0);
        new Thread(new Runnable() {
            @Override
            public void run() {
                String message;
                try {
                    File out = benchmark(modelDir, iterations, warmup, threads);
                    message = "Wrote " + out;
                } catch (Throwable t) {
                    Log.e(TAG, "benchmark failed", t);
                    message = "Benchmark failed: " + t.getMessage();
                }
                Log.i(TAG, message);
                final String text = message;
                runOnUiThread(new Runnable() {
                    @Override
                    public void run() {
                        status.setText(text);
                        finish();
                    }
                });
            }
        }, "edgeml-benchmark").start();
    }

    private File benchmark(String modelDir, int iterations, int warmup, final int threads) throws Exception {
        final ArtifactFolder artifact = ModelStore.locate(this, modelDir);
        final Manifest manifest = artifact.hasManifest() ? artifact.readManifest() : null;
        final TensorData input = manifest == null || manifest.preprocessing == null ? null : sampleInput(manifest);
        final ExecuTorchRunner[] holder = new ExecuTorchRunner[1];
        BenchmarkRun.Program program = new BenchmarkRun.Program() {
            @Override
            public int load() {
                try {
                    holder[0] = ExecuTorchRunner.load(artifact.program.getPath(), threads);
                    return 0;
                } catch (RuntimeException e) {
                    Log.e(TAG, "load failed", e);
                    return ExecuTorchRunner.errorCode(e);
                }
            }

            @Override
            public void run() {
                if (input == null) {
                    holder[0].forwardDefaultInputs();
                } else {
                    holder[0].forward(input);
                }
            }

            @Override
            public double memoryMb() {
                return Debug.getPss() / 1024.0;
            }

            @Override
            public void close() {
                if (holder[0] != null) {
                    holder[0].close();
                    holder[0] = null;
                }
            }
        };
        BenchmarkReport report = BenchmarkRun.run(artifact.program.getName(), program, warmup, iterations,
                deviceInfo(), LatencyBenchmark.SYSTEM_CLOCK);
        File out = new File(getFilesDir(), RESULTS_FILE);
        File tmp = new File(getFilesDir(), RESULTS_FILE + ".tmp");
        OutputStream os = new FileOutputStream(tmp);
        try {
            os.write(report.toJson().getBytes("UTF-8"));
        } finally {
            os.close();
        }
        if (!tmp.renameTo(out)) {
            throw new java.io.IOException("cannot write " + out);
        }
        return out;
    }

    /** The bundled photo as the manifest's model expects it: one crop, or one batch of tiles. */
    private TensorData sampleInput(Manifest m) throws Exception {
        RgbImage img;
        InputStream in = getAssets().open(MainActivity.SAMPLE_ASSET);
        try {
            img = AndroidImages.decode(in, MainActivity.SAMPLE_ASSET);
        } finally {
            in.close();
        }
        if (!m.isTileEncoder()) {
            int batch = m.dynamicBatch() ? 1 : m.maxInputBatch();
            float[] data = new float[batch * 3 * m.preprocessing.crop * m.preprocessing.crop];
            for (int b = 0; b < batch; b++) {
                m.preprocessing.applyInto(img, data, b * 3 * m.preprocessing.crop * m.preprocessing.crop);
            }
            return new TensorData(data, m.imageInputShape(batch));
        }
        int batch = m.dynamicBatch() ? Math.min(m.preprocessing.tiling.batch, m.maxInputBatch()) : m.maxInputBatch();
        int[] grid = TileSelector.select(img.width, img.height, m.preprocessing.tiling);
        Tiler.Tiled tiled = Tiler.tile(img, grid, m.preprocessing.tiling.tile, 0, m.preprocessing.tiling.thumbnail);
        List<RgbImage> tiles = new java.util.ArrayList<RgbImage>(tiled.tiles);
        while (tiles.size() < batch) {
            tiles.add(tiles.get(tiles.size() - 1));
        }
        float[] data = Tiler.normalizeBatch(tiles, 0, batch, m.preprocessing.mean, m.preprocessing.std);
        return new TensorData(data, m.imageInputShape(batch));
    }

    private DeviceInfo deviceInfo() {
        ActivityManager am = (ActivityManager) getSystemService(Context.ACTIVITY_SERVICE);
        ActivityManager.MemoryInfo mem = new ActivityManager.MemoryInfo();
        if (am != null) {
            am.getMemoryInfo(mem);
        }
        return new DeviceInfo(Build.BRAND, Build.MODEL, "Android " + Build.VERSION.RELEASE, mem.totalMem, mem.availMem);
    }
}
