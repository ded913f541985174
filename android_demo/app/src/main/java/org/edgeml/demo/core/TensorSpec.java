package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** One entry of the manifest's "inputs" or "outputs": name, shape, dtype, layout, kind, dynamic axes, labels. */
public final class TensorSpec {
    public final String name;
    public final long[] shape;
    public final String dtype;
    public final String layout;
    /** Outputs: "logits", "embeddings", "tokens", ...; empty for inputs. */
    public final String kind;
    /** Axis -> {min, max} for dimensions the program accepts at any size in that range. */
    public final Map<Integer, long[]> dynamic;
    /** Outputs: the class names the manifest carries inline (a user's --labels, a Hugging Face
     *  id2label); empty when it names none. */
    public final List<String> labels;

    public TensorSpec(String name, long[] shape, String dtype, String layout, String kind,
                      Map<Integer, long[]> dynamic) {
        this(name, shape, dtype, layout, kind, dynamic, Collections.<String>emptyList());
    }

    public TensorSpec(String name, long[] shape, String dtype, String layout, String kind,
                      Map<Integer, long[]> dynamic, List<String> labels) {
        this.name = name;
        this.shape = shape.clone();
        this.dtype = dtype;
        this.layout = layout;
        this.kind = kind;
        this.dynamic = Collections.unmodifiableMap(new LinkedHashMap<Integer, long[]>(dynamic));
        this.labels = Collections.unmodifiableList(new ArrayList<String>(labels));
    }

    public boolean isDynamic(int axis) {
        return dynamic.containsKey(axis);
    }

    public long numel() {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    static TensorSpec fromJson(Map<String, Object> obj, String path) {
        String name = JsonFields.string(obj, "name", path);
        long[] shape = JsonFields.longs(JsonFields.require(obj, "shape", path), path + ".shape");
        for (int i = 0; i < shape.length; i++) {
            if (shape[i] < 0) {
                throw new ManifestException("field " + path + ".shape[" + i + "] is negative (" + shape[i] + ")");
            }
        }
        String dtype = JsonFields.optString(obj, "dtype", path, "float32");
        String layout = JsonFields.optString(obj, "layout", path, "NCHW");
        String kind = JsonFields.optString(obj, "kind", path, "");
        Map<Integer, long[]> dynamic = new LinkedHashMap<Integer, long[]>();
        Map<String, Object> dyn = JsonFields.optObject(obj, "dynamic", path);
        if (dyn != null) {
            for (Map.Entry<String, Object> e : dyn.entrySet()) {
                String where = path + ".dynamic." + e.getKey();
                int axis;
                try {
                    axis = Integer.parseInt(e.getKey().trim());
                } catch (NumberFormatException ex) {
                    throw new ManifestException("field " + where + ": the key should be an axis number");
                }
                if (axis < 0 || axis >= shape.length) {
                    throw new ManifestException("field " + where + ": axis out of range for shape of rank " + shape.length);
                }
                long[] range = JsonFields.longs(e.getValue(), where);
                if (range.length != 2 || range[0] > range[1]) {
                    throw new ManifestException("field " + where + " should be [min, max]");
                }
                dynamic.put(axis, range);
            }
        }
        List<String> labels = new ArrayList<String>();
        Object names = obj.get("labels");
        if (names != null) {
            if (!(names instanceof List)) {
                throw JsonFields.wrongType(path + ".labels", "an array of strings or null", names);
            }
            List<?> list = (List<?>) names;
            for (int i = 0; i < list.size(); i++) {
                if (!(list.get(i) instanceof String)) {
                    throw JsonFields.wrongType(path + ".labels[" + i + "]", "a string", list.get(i));
                }
                labels.add((String) list.get(i));
            }
        }
        return new TensorSpec(name, shape, dtype, layout, kind, dynamic, labels);
    }

    static TensorSpec[] listFromJson(List<Object> list, String path) {
        TensorSpec[] out = new TensorSpec[list.size()];
        for (int i = 0; i < out.length; i++) {
            Object v = list.get(i);
            String where = path + "[" + i + "]";
            if (!(v instanceof Map)) {
                throw JsonFields.wrongType(where, "an object", v);
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) v;
            out[i] = fromJson(m, where);
        }
        return out;
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder(name).append(" [");
        for (int i = 0; i < shape.length; i++) {
            if (i > 0) {
                sb.append(", ");
            }
            long[] r = dynamic.get(i);
            sb.append(r == null ? Long.toString(shape[i]) : (r[0] + ".." + r[1]));
        }
        return sb.append("] ").append(dtype).toString();
    }
}
