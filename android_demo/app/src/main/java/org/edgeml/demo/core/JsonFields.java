package org.edgeml.demo.core;

import java.util.List;
import java.util.Map;

/**
 * Typed access to parsed JSON objects, with errors that name the field's path
 * ("preprocessing.mean[2]") so that a user can fix the file.
 */
final class JsonFields {
    private JsonFields() {
    }

    static boolean has(Map<String, Object> obj, String key) {
        return obj.containsKey(key) && obj.get(key) != null;
    }

    static Object require(Map<String, Object> obj, String key, String path) {
        if (!obj.containsKey(key)) {
            throw new ManifestException("missing field " + join(path, key));
        }
        return obj.get(key);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Map<String, Object> obj, String key, String path) {
        Object v = require(obj, key, path);
        if (!(v instanceof Map)) {
            throw wrongType(join(path, key), "an object", v);
        }
        return (Map<String, Object>) v;
    }

    /** The object at key, or null when the key is absent or null. */
    @SuppressWarnings("unchecked")
    static Map<String, Object> optObject(Map<String, Object> obj, String key, String path) {
        Object v = obj.get(key);
        if (v == null) {
            return null;
        }
        if (!(v instanceof Map)) {
            throw wrongType(join(path, key), "an object or null", v);
        }
        return (Map<String, Object>) v;
    }

    @SuppressWarnings("unchecked")
    static List<Object> array(Map<String, Object> obj, String key, String path) {
        Object v = require(obj, key, path);
        if (!(v instanceof List)) {
            throw wrongType(join(path, key), "an array", v);
        }
        return (List<Object>) v;
    }

    static String string(Map<String, Object> obj, String key, String path) {
        Object v = require(obj, key, path);
        if (!(v instanceof String)) {
            throw wrongType(join(path, key), "a string", v);
        }
        return (String) v;
    }

    static String optString(Map<String, Object> obj, String key, String path, String fallback) {
        Object v = obj.get(key);
        if (v == null) {
            return fallback;
        }
        if (!(v instanceof String)) {
            throw wrongType(join(path, key), "a string or null", v);
        }
        return (String) v;
    }

    static double number(Map<String, Object> obj, String key, String path) {
        return asDouble(require(obj, key, path), join(path, key));
    }

    static double optNumber(Map<String, Object> obj, String key, String path, double fallback) {
        Object v = obj.get(key);
        return v == null ? fallback : asDouble(v, join(path, key));
    }

    static long integer(Map<String, Object> obj, String key, String path) {
        return asLong(require(obj, key, path), join(path, key));
    }

    static long optInteger(Map<String, Object> obj, String key, String path, long fallback) {
        Object v = obj.get(key);
        return v == null ? fallback : asLong(v, join(path, key));
    }

    static double asDouble(Object v, String path) {
        if (!(v instanceof Number)) {
            throw wrongType(path, "a number", v);
        }
        return ((Number) v).doubleValue();
    }

    static long asLong(Object v, String path) {
        if (v instanceof Long || v instanceof Integer) {
            return ((Number) v).longValue();
        }
        if (v instanceof Double) {
            double d = (Double) v;
            if (d == Math.rint(d) && Math.abs(d) < 9.0e15) {
                return (long) d;
            }
        }
        throw wrongType(path, "an integer", v);
    }

    static double[] doubles(Object v, String path) {
        if (!(v instanceof List)) {
            throw wrongType(path, "an array of numbers", v);
        }
        List<?> list = (List<?>) v;
        double[] out = new double[list.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = asDouble(list.get(i), path + "[" + i + "]");
        }
        return out;
    }

    static long[] longs(Object v, String path) {
        if (!(v instanceof List)) {
            throw wrongType(path, "an array of integers", v);
        }
        List<?> list = (List<?>) v;
        long[] out = new long[list.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = asLong(list.get(i), path + "[" + i + "]");
        }
        return out;
    }

    static String join(String path, String key) {
        return path == null || path.isEmpty() ? key : path + "." + key;
    }

    static ManifestException wrongType(String path, String expected, Object got) {
        return new ManifestException("field " + path + " should be " + expected + ", got " + Json.typeName(got));
    }
}
