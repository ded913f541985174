package org.edgeml.demo.core;

/** A float32 tensor as plain data: values in row-major order and the shape. */
public final class TensorData {
    public final float[] data;
    public final long[] shape;

    public TensorData(float[] data, long[] shape) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in shape");
            }
            n *= d;
        }
        if (n != data.length) {
            throw new IllegalArgumentException("shape holds " + n + " values but the data has " + data.length);
        }
        this.data = data;
        this.shape = shape.clone();
    }

    public static String shapeString(long[] shape) {
        StringBuilder sb = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            sb.append(i == 0 ? "" : ", ").append(shape[i]);
        }
        return sb.append(shape.length == 1 ? ",)" : ")").toString();
    }
}
