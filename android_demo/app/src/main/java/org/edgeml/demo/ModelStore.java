package org.edgeml.demo;

import android.content.Context;
import android.content.res.AssetManager;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.Arrays;
import org.edgeml.demo.core.ArtifactFolder;
import org.edgeml.demo.core.Labels;

/**
 * Where the artifact comes from: a folder on the device (intent extra "model_dir", e.g.
 * /data/local/tmp/edgeml after {@code adb push}) or the app's assets (what
 * {@code edgeml export ... --output-dir android_demo/app/src/main/assets} put there), copied to
 * the app's files folder because ExecuTorch loads programs from a file path.
 */
final class ModelStore {
    private ModelStore() {
    }

    static ArtifactFolder locate(Context context, String modelDir) throws IOException {
        if (modelDir != null && !modelDir.isEmpty()) {
            return ArtifactFolder.first(new File(modelDir));
        }
        return fromAssets(context);
    }

    static ArtifactFolder fromAssets(Context context) throws IOException {
        AssetManager assets = context.getAssets();
        String[] names = assets.list("");
        if (names == null) {
            names = new String[0];
        }
        Arrays.sort(names);
        String pte = null;
        for (String n : names) {
            if (n.endsWith(".pte")) {
                pte = n;
                break;
            }
        }
        if (pte == null) {
            throw new IOException("no .pte in the app's assets: run edgeml export ... --output-dir "
                    + "android_demo/app/src/main/assets and rebuild, or pass a model folder (extra model_dir)");
        }
        File dir = new File(context.getFilesDir(), "models");
        if (!dir.isDirectory() && !dir.mkdirs()) {
            throw new IOException("cannot create " + dir);
        }
        File program = new File(dir, pte);
        copyAsset(assets, pte, program);
        String json = ArtifactFolder.manifestName(pte);
        if (Arrays.asList(names).contains(json)) {
            copyAsset(assets, json, new File(dir, json));
        }
        return ArtifactFolder.of(program);
    }

    private static void copyAsset(AssetManager assets, String name, File dest) throws IOException {
        InputStream in = assets.open(name);
        File tmp = new File(dest.getPath() + ".tmp");
        try {
            OutputStream out = new FileOutputStream(tmp);
            try {
                byte[] buf = new byte[1 << 16];
                int n;
                while ((n = in.read(buf)) > 0) {
                    out.write(buf, 0, n);
                }
            } finally {
                out.close();
            }
        } finally {
            in.close();
        }
        if (!tmp.renameTo(dest)) {
            throw new IOException("cannot write " + dest);
        }
    }

    /** The label set a manifest names, from assets/labels/NAME.txt, or none (class indices). */
    static Labels labels(Context context, String labelSet) {
        String path = Labels.assetPath(labelSet);
        if (path == null) {
            return Labels.none();
        }
        try {
            InputStream in = context.getAssets().open(path);
            try {
                return Labels.parse(ArtifactFolder.readUtf8(in));
            } finally {
                in.close();
            }
        } catch (IOException e) {
            return Labels.none();
        }
    }
}
