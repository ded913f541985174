package org.edgeml.demo;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.net.Uri;
import android.os.Bundle;
import android.util.Log;
import android.view.View;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.TextView;
import java.io.InputStream;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.edgeml.demo.core.ArtifactFolder;
import org.edgeml.demo.core.ArtifactName;
import org.edgeml.demo.core.Classification;
import org.edgeml.demo.core.LatencyBenchmark;
import org.edgeml.demo.core.Labels;
import org.edgeml.demo.core.Manifest;
import org.edgeml.demo.core.ResultText;
import org.edgeml.demo.core.RgbImage;
import org.edgeml.demo.core.TileEncoding;

/**
 * Loads an edgeml artifact (the .pte and its manifest) and runs it on the bundled sample photo or
 * a picked image: top-5 with the median latency for a classifier; grid, tokens and per-batch
 * latency for a tile encoder. Everything about the model comes from the manifest.
 *
 * <p>Intent extras (all optional): model_dir (folder with the .pte and .json; default: the app's
 * assets), num_iter (timed runs, default 20), num_warm_up_iter (default 3), num_threads.
 */
public class MainActivity extends Activity {
    private static final String TAG = "edgeml";
    private static final int PICK_IMAGE = 1;
    static final String SAMPLE_ASSET = "sample.jpg";

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private TextView modelInfo;
    private TextView results;
    private ImageView preview;
    private Button sampleButton;
    private Button pickButton;

    // Touched only on the worker thread.
    private ExecuTorchRunner runner;
    private Manifest manifest;
    private Labels labels = Labels.none();
    private int iterations = 20;
    private int warmup = 3;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        modelInfo = (TextView) findViewById(R.id.model_info);
        results = (TextView) findViewById(R.id.results);
        preview = (ImageView) findViewById(R.id.preview);
        sampleButton = (Button) findViewById(R.id.run_sample);
        pickButton = (Button) findViewById(R.id.pick_image);
        setButtonsEnabled(false);

        Intent intent = getIntent();
        iterations = Math.max(1, intent.getIntExtra("num_iter", 20));
        warmup = Math.max(0, intent.getIntExtra("num_warm_up_iter", 3));
        final String modelDir = intent.getStringExtra("model_dir");
        final int threads = intent.getIntExtra("num_threads", 0);

        sampleButton.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                runOnImage(null);
            }
        });
        pickButton.setOnClickListener(new View.OnClickListener() {
            @Override
            public void onClick(View v) {
                Intent pick = new Intent(Intent.ACTION_GET_CONTENT);
                pick.setType("image/*");
                startActivityForResult(Intent.createChooser(pick, getString(R.string.pick_image)), PICK_IMAGE);
            }
        });

        modelInfo.setText(R.string.loading);
        worker.execute(new Runnable() {
            @Override
            public void run() {
                loadModel(modelDir, threads);
            }
        });
    }

    private void loadModel(String modelDir, int threads) {
        try {
            ArtifactFolder artifact = ModelStore.locate(this, modelDir);
            manifest = artifact.readManifest();
            long t0 = System.nanoTime();
            runner = ExecuTorchRunner.load(artifact.program.getPath(), threads);
            double loadMs = (System.nanoTime() - t0) / 1e6;
            List<String> inline = manifest.outputs[0].labels;
            labels = inline.isEmpty() ? ModelStore.labels(this, manifest.labels) : Labels.of(inline);
            String text = ResultText.model(manifest, ArtifactName.parse(artifact.program.getName()),
                    artifact.program.length(), runner.backends())
                    + String.format(java.util.Locale.US, "Load: %.0f ms; runs: %d warm-up + %d timed%n", loadMs, warmup, iterations);
            if (inline.isEmpty() && manifest.labels != null && labels.size() == 0) {
                text += "No label file for \"" + manifest.labels + "\": showing class indices\n";
            }
            show(modelInfo, text);
            enableButtons();
        } catch (Throwable t) {
            Log.e(TAG, "model load failed", t);
            show(modelInfo, "Cannot load the model: " + t.getMessage());
        }
    }

    private void runOnImage(final Uri uri) {
        setButtonsEnabled(false);
        results.setText(R.string.running);
        worker.execute(new Runnable() {
            @Override
            public void run() {
                try {
                    RgbImage img;
                    if (uri == null) {
                        InputStream in = getAssets().open(SAMPLE_ASSET);
                        try {
                            img = AndroidImages.decode(in, SAMPLE_ASSET);
                        } finally {
                            in.close();
                        }
                    } else {
                        img = AndroidImages.decode(getContentResolver(), uri);
                    }
                    showPreview(AndroidImages.preview(img, 512));
                    String header = "Image: " + img.width + "x" + img.height + "\n";
                    if (manifest.preprocessing == null) {
                        show(results, header + "The manifest has no preprocessing: this model does not take an image.");
                    } else if (manifest.isTileEncoder()) {
                        TileEncoding t = TileEncoding.run(manifest, img, runner, LatencyBenchmark.SYSTEM_CLOCK);
                        show(results, header + ResultText.tiles(t));
                    } else {
                        int k = manifest.isClassifier() ? 5 : 0;
                        Classification c = Classification.run(manifest, img, runner, warmup, iterations, k,
                                LatencyBenchmark.SYSTEM_CLOCK);
                        String body = k > 0 ? ResultText.classification(c, labels)
                                : "Output " + org.edgeml.demo.core.TensorData.shapeString(c.outputShape) + "\n"
                                + ResultText.latency(c.latency);
                        show(results, header + body);
                    }
                } catch (Throwable t) {
                    Log.e(TAG, "inference failed", t);
                    show(results, "Failed: " + t.getMessage());
                } finally {
                    enableButtons();
                }
            }
        });
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        super.onActivityResult(requestCode, resultCode, data);
        if (requestCode == PICK_IMAGE && resultCode == RESULT_OK && data != null && data.getData() != null) {
            runOnImage(data.getData());
        }
    }

    @Override
    protected void onDestroy() {
        worker.execute(new Runnable() {
            @Override
            public void run() {
                if (runner != null) {
                    runner.close();
                    runner = null;
                }
            }
        });
        worker.shutdown();
        super.onDestroy();
    }

    private void show(final TextView view, final String text) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                view.setText(text);
            }
        });
    }

    private void showPreview(final Bitmap bmp) {
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                preview.setImageBitmap(bmp);
            }
        });
    }

    private void enableButtons() {
        final boolean ready = runner != null;
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                setButtonsEnabled(ready);
            }
        });
    }

    private void setButtonsEnabled(boolean enabled) {
        sampleButton.setEnabled(enabled);
        pickButton.setEnabled(enabled);
    }
}
