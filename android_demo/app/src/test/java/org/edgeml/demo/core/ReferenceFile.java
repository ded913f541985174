package org.edgeml.demo.core;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;

/**
 * Reader for android_demo/app/src/test/resources/preprocess_reference.bin: magic "EDGEMLPR",
 * uint32 LE header length, a UTF-8 JSON header, then little-endian float32 values
 * (format documented in android_demo/tools/make_preprocess_reference.py).
 */
final class ReferenceFile {
    final Map<String, Object> header;
    final float[] values;

    private ReferenceFile(Map<String, Object> header, float[] values) {
        this.header = header;
        this.values = values;
    }

    static ReferenceFile read(File file) throws IOException {
        byte[] all;
        RandomAccessFile f = new RandomAccessFile(file, "r");
        try {
            all = new byte[(int) f.length()];
            f.readFully(all);
        } finally {
            f.close();
        }
        if (all.length < 12 || !new String(all, 0, 8, "US-ASCII").equals("EDGEMLPR")) {
            throw new IOException(file + " is not a preprocessing reference file (bad magic)");
        }
        ByteBuffer buf = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        int n = buf.getInt(8);
        if (n < 2 || 12L + n > all.length) {
            throw new IOException(file + ": header length " + n + " does not fit the file");
        }
        Map<String, Object> header = Json.parseObject(new String(all, 12, n, "UTF-8"));
        int payload = all.length - 12 - n;
        if (payload % 4 != 0) {
            throw new IOException(file + ": payload is not a whole number of float32 values");
        }
        float[] values = new float[payload / 4];
        ByteBuffer p = ByteBuffer.wrap(all, 12 + n, payload).order(ByteOrder.LITTLE_ENDIAN);
        p.asFloatBuffer().get(values);
        return new ReferenceFile(header, values);
    }
}
