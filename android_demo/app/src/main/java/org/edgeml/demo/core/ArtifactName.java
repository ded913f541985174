package org.edgeml.demo.core;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Model, backend and quantization read from an artifact's file name, following ExecuTorch's
 * benchmark-app convention {@code <model>_<backend>_<quant>.pte} (e.g.
 * {@code mobilemamba_t2_xnnpack_int8.pte} -> mobilemamba_t2 / xnnpack / int8): the model name
 * takes everything before the last two underscore-separated fields. Names of word characters
 * only ([A-Za-z0-9_], '+' also allowed in the backend) match; any other name is reported whole
 * as the model with empty backend and quantization, as the benchmark app does.
 */
public final class ArtifactName {
    private static final Pattern NAME = Pattern.compile("(\\w+)_([\\w+]+)_(\\w+)");

    public final String model;
    public final String backend;
    public final String quantization;

    private ArtifactName(String model, String backend, String quantization) {
        this.model = model;
        this.backend = backend;
        this.quantization = quantization;
    }

    /** Parse a file name or path; the directory and a ".pte" suffix are removed first. */
    public static ArtifactName parse(String fileName) {
        String stem = fileName;
        int slash = Math.max(stem.lastIndexOf('/'), stem.lastIndexOf('\\'));
        if (slash >= 0) {
            stem = stem.substring(slash + 1);
        }
        if (stem.endsWith(".pte")) {
            stem = stem.substring(0, stem.length() - 4);
        }
        Matcher m = NAME.matcher(stem);
        if (m.matches()) {
            return new ArtifactName(m.group(1), m.group(2), m.group(3));
        }
        return new ArtifactName(stem, "", "");
    }

    @Override
    public String toString() {
        return model + " / " + backend + " / " + quantization;
    }
}
