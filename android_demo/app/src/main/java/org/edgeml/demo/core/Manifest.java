package org.edgeml.demo.core;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * An edgeml artifact manifest ({@code <stem>.json} next to the {@code .pte}), schema version 1 as
 * documented in {@code edgeml/manifest.py}. Everything the app knows about a model comes from here:
 * input shape, normalization, labels, tiling policy, quantization, tool versions.
 */
public final class Manifest {
    public static final int FORMAT_VERSION = 1;

    public final int formatVersion;
    public final String artifactFile;
    public final String artifactFormat;
    public final String backend;
    public final String sha256;
    public final long sizeBytes;
    public final String modelName;
    /** model.config as parsed (resolution, num_classes, labels, output, ...). */
    public final Map<String, Object> config;
    /** model.config.labels: a label-set name such as "imagenet-1k", or null. */
    public final String labels;
    public final int numClasses;
    public final TensorSpec[] inputs;
    public final TensorSpec[] outputs;
    /** Null when the model takes no image (the manifest says null). */
    public final Preprocessing preprocessing;
    public final String quantizationScheme;
    /** tools.executorch, or null if the manifest does not say. */
    public final String executorchVersion;

    private Manifest(Map<String, Object> root) {
        Object version = JsonFields.require(root, "format_version", "");
        this.formatVersion = (int) JsonFields.asLong(version, "format_version");
        if (formatVersion != FORMAT_VERSION) {
            throw new ManifestException("manifest format_version " + formatVersion + " is not supported (expected "
                    + FORMAT_VERSION + "); export again with the edgeml version this app was built for");
        }
        Map<String, Object> artifact = JsonFields.object(root, "artifact", "");
        this.artifactFile = JsonFields.string(artifact, "file", "artifact");
        this.artifactFormat = JsonFields.optString(artifact, "format", "artifact", "pte");
        this.backend = JsonFields.optString(artifact, "backend", "artifact", "");
        this.sha256 = JsonFields.optString(artifact, "sha256", "artifact", "");
        this.sizeBytes = JsonFields.optInteger(artifact, "size_bytes", "artifact", -1);

        Map<String, Object> model = JsonFields.object(root, "model", "");
        this.modelName = JsonFields.string(model, "name", "model");
        Map<String, Object> cfg = JsonFields.optObject(model, "config", "model");
        this.config = Collections.unmodifiableMap(cfg == null ? new LinkedHashMap<String, Object>() : cfg);
        this.labels = cfg == null ? null : JsonFields.optString(cfg, "labels", "model.config", null);
        this.numClasses = cfg == null ? 0 : (int) JsonFields.optInteger(cfg, "num_classes", "model.config", 0);

        this.inputs = TensorSpec.listFromJson(JsonFields.array(root, "inputs", ""), "inputs");
        this.outputs = TensorSpec.listFromJson(JsonFields.array(root, "outputs", ""), "outputs");
        if (inputs.length == 0) {
            throw new ManifestException("manifest lists no inputs");
        }
        if (outputs.length == 0) {
            throw new ManifestException("manifest lists no outputs");
        }
        Map<String, Object> pre = JsonFields.optObject(root, "preprocessing", "");
        this.preprocessing = pre == null ? null : Preprocessing.fromJson(pre, "preprocessing");

        Map<String, Object> quant = JsonFields.optObject(root, "quantization", "");
        this.quantizationScheme = quant == null ? "none" : JsonFields.optString(quant, "scheme", "quantization", "none");
        Map<String, Object> tools = JsonFields.optObject(root, "tools", "");
        this.executorchVersion = tools == null ? null : JsonFields.optString(tools, "executorch", "tools", null);

        if (preprocessing != null) {
            checkImageInput();
        }
    }

    /** Parse manifest text; ManifestException (or IllegalArgumentException for bad JSON) says what is wrong. */
    public static Manifest parse(String json) {
        return new Manifest(Json.parseObject(json));
    }

    /** True when the artifact encodes tiles (preprocessing.tiling present). */
    public boolean isTileEncoder() {
        return preprocessing != null && preprocessing.tiling != null;
    }

    /** True when the first output is class logits. */
    public boolean isClassifier() {
        if (isTileEncoder()) {
            return false;
        }
        String kind = outputs[0].kind;
        if (kind != null && !kind.isEmpty()) {
            return kind.equals("logits");
        }
        Object out = config.get("output");
        return "logits".equals(out);
    }

    private void checkImageInput() {
        TensorSpec in = inputs[0];
        if (in.shape.length != 4 || in.shape[1] != 3) {
            throw new ManifestException("input " + in.name + " has shape " + in + "; an image model takes (N, 3, H, W)");
        }
        if (!"float32".equals(in.dtype)) {
            throw new ManifestException("input " + in.name + " is " + in.dtype + "; this app feeds float32 images");
        }
        int side = isTileEncoder() ? preprocessing.tiling.tile : preprocessing.crop;
        for (int axis = 2; axis <= 3; axis++) {
            long[] range = in.dynamic.get(axis);
            boolean fits = range == null ? in.shape[axis] == side : (range[0] <= side && side <= range[1]);
            if (!fits) {
                throw new ManifestException("input " + in.name + " " + in + " does not accept the "
                        + side + "x" + side + " images the preprocessing produces");
            }
        }
    }

    /** The shape to feed for a batch of {@code batch} images (dynamic spatial axes take the crop size). */
    public long[] imageInputShape(int batch) {
        int side = isTileEncoder() ? preprocessing.tiling.tile : preprocessing.crop;
        return new long[] {batch, 3, side, side};
    }

    /** Largest batch the first input takes: its fixed size, or the top of its dynamic range. */
    public int maxInputBatch() {
        TensorSpec in = inputs[0];
        long[] range = in.dynamic.get(0);
        return (int) (range == null ? in.shape[0] : range[1]);
    }

    /** Whether the first input's batch axis is dynamic (a remainder batch may be smaller). */
    public boolean dynamicBatch() {
        return inputs[0].isDynamic(0);
    }
}
