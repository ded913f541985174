package org.edgeml.demo.core;

/** Top-k of a score vector, with softmax probabilities for display. */
public final class TopK {
    private TopK() {
    }

    /** One ranked class. */
    public static final class Entry {
        public final int index;
        public final float score;
        public final double probability;

        Entry(int index, float score, double probability) {
            this.index = index;
            this.score = score;
            this.probability = probability;
        }
    }

    /**
     * The k highest scores, highest first; equal scores keep the lower index first (as
     * torch.topk does on CPU for distinct values, and deterministically here for ties). NaN ranks
     * below every number. k is clamped to the vector's length.
     */
    public static Entry[] topK(float[] scores, int k) {
        if (scores.length == 0) {
            return new Entry[0];
        }
        if (k < 0) {
            throw new IllegalArgumentException("k must be >= 0, got " + k);
        }
        k = Math.min(k, scores.length);
        int[] idx = new int[k];
        int filled = 0;
        for (int i = 0; i < scores.length; i++) {
            if (filled < k) {
                int pos = filled++;
                while (pos > 0 && better(scores, i, idx[pos - 1])) {
                    idx[pos] = idx[pos - 1];
                    pos--;
                }
                idx[pos] = i;
            } else if (better(scores, i, idx[k - 1])) {
                int pos = k - 1;
                while (pos > 0 && better(scores, i, idx[pos - 1])) {
                    idx[pos] = idx[pos - 1];
                    pos--;
                }
                idx[pos] = i;
            }
        }
        double[] probs = softmax(scores);
        Entry[] out = new Entry[k];
        for (int j = 0; j < k; j++) {
            out[j] = new Entry(idx[j], scores[idx[j]], probs[idx[j]]);
        }
        return out;
    }

    /** Whether score a ranks strictly above score b (a is the later index on ties, so it does not). */
    private static boolean better(float[] s, int a, int b) {
        float x = s[a];
        float y = s[b];
        if (Float.isNaN(x)) {
            return false;
        }
        if (Float.isNaN(y)) {
            return true;
        }
        return x > y;
    }

    /** Numerically stable softmax in double; NaN scores get probability 0. */
    public static double[] softmax(float[] scores) {
        double max = Double.NEGATIVE_INFINITY;
        for (float s : scores) {
            if (!Float.isNaN(s) && s > max) {
                max = s;
            }
        }
        double[] p = new double[scores.length];
        if (Double.isInfinite(max) && max < 0) {
            return p; // no finite or +inf score
        }
        double sum = 0;
        for (int i = 0; i < scores.length; i++) {
            double e = Float.isNaN(scores[i]) ? 0.0 : Math.exp(scores[i] - max);
            if (Double.isNaN(e)) {
                e = 1.0; // +inf - +inf
            }
            p[i] = e;
            sum += e;
        }
        for (int i = 0; i < p.length; i++) {
            p[i] /= sum;
        }
        return p;
    }
}
