package org.edgeml.demo.core;

import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class TopKTest {
    private static String indices(TopK.Entry[] e) {
        StringBuilder sb = new StringBuilder();
        for (TopK.Entry x : e) {
            sb.append(x.index).append(' ');
        }
        return sb.toString().trim();
    }

    @Test
    public void ranksHighestFirst() {
        float[] s = {0.1f, 3f, -1f, 2.5f, 7f, 3f, 0f};
        assertEquals("4 1 5 3 0", indices(TopK.topK(s, 5)));
    }

    @Test
    public void tiesKeepTheLowerIndexFirstAndNanRanksLast() {
        float[] s = {1f, Float.NaN, 1f, 1f, 2f};
        assertEquals("4 0 2 3 1", indices(TopK.topK(s, 5)));
    }

    @Test
    public void kIsClampedAndProbabilitiesAreASoftmax() {
        float[] s = {0f, (float) Math.log(3.0)};
        TopK.Entry[] e = TopK.topK(s, 5);
        assertEquals(2, e.length);
        assertEquals(0.75, e[0].probability, 1e-6);
        assertEquals(0.25, e[1].probability, 1e-6);
    }

    @Test
    public void agreesWithAFullSortOnRandomScores() {
        java.util.Random r = new java.util.Random(7);
        for (int trial = 0; trial < 50; trial++) {
            float[] s = new float[1000];
            for (int i = 0; i < s.length; i++) {
                s[i] = (float) r.nextGaussian();
            }
            Integer[] order = new Integer[s.length];
            for (int i = 0; i < s.length; i++) {
                order[i] = i;
            }
            final float[] fs = s;
            java.util.Arrays.sort(order, new java.util.Comparator<Integer>() {
                @Override
                public int compare(Integer a, Integer b) {
                    int c = Float.compare(fs[b], fs[a]);
                    return c != 0 ? c : Integer.compare(a, b);
                }
            });
            TopK.Entry[] e = TopK.topK(s, 5);
            for (int j = 0; j < 5; j++) {
                assertEquals(order[j].intValue(), e[j].index);
            }
        }
    }
}
