package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/**
 * Tile-grid selection for BlueLM-V-style dynamic resolution (arXiv 2411.10640, Alg. 1 "relaxed
 * aspect-ratio matching") and its two baselines, LLaVA-NeXT's anyres and InternVL's closest
 * aspect ratio, reproducing {@code edgeml.dynres.select_tile_grid} grid for grid.
 *
 * <p>A grid is {m, n}: m tiles across, n tiles down. Enumeration orders and the arithmetic
 * (IEEE doubles, integers compared exactly) are those documented in
 * {@code edgeml/dynres/tiling.py}; the JVM test checks every case of the JSON file that
 * {@code python -m edgeml.dynres.cases} writes.
 */
public final class TileSelector {
    public static final String RELAXED = "relaxed";
    public static final String LLAVA_NEXT = "llava_next";
    public static final String INTERNVL = "internvl";

    private TileSelector() {
    }

    public static boolean isPolicy(String policy) {
        return RELAXED.equals(policy) || LLAVA_NEXT.equals(policy) || INTERNVL.equals(policy);
    }

    /**
     * Candidate grids: every (m, n) with m, n &lt;= maxGrid when maxGrid &gt; 0, otherwise InternVL's
     * every (m, n) with m * n &lt;= (maxTiles &gt; 0 ? maxTiles : 6); then, when maxTiles &gt; 0, grids
     * with more than maxTiles tiles are dropped.
     */
    public static List<int[]> candidates(int maxGrid, int maxTiles) {
        List<int[]> grids = new ArrayList<int[]>();
        if (maxGrid > 0) {
            for (int m = 1; m <= maxGrid; m++) {
                for (int n = 1; n <= maxGrid; n++) {
                    grids.add(new int[] {m, n});
                }
            }
        } else {
            int limit = maxTiles > 0 ? maxTiles : 6;
            for (int m = 1; m <= limit; m++) {
                for (int n = 1; n <= limit; n++) {
                    if (m * n <= limit) {
                        grids.add(new int[] {m, n});
                    }
                }
            }
        }
        if (maxTiles > 0) {
            List<int[]> kept = new ArrayList<int[]>();
            for (int[] g : grids) {
                if ((long) g[0] * g[1] <= maxTiles) {
                    kept.add(g);
                }
            }
            grids = kept;
        }
        return grids;
    }

    /** Select with the spec's policy, alpha and candidates. */
    public static int[] select(int width, int height, TilingSpec spec) {
        return select(width, height, spec.tile, spec.policy, spec.alpha, spec.candidates());
    }

    /** The grid {m, n} for a width x height image among the candidate grids. */
    public static int[] select(int width, int height, int tile, String policy, double alpha, List<int[]> grids) {
        if (width < 1 || height < 1) {
            throw new IllegalArgumentException("image size must be positive, got " + width + "x" + height);
        }
        if (tile < 1) {
            throw new IllegalArgumentException("tile must be positive, got " + tile);
        }
        if (!isPolicy(policy)) {
            throw new IllegalArgumentException("unknown tiling policy \"" + policy + "\"; choose relaxed, llava_next or internvl");
        }
        if (!(alpha >= 0) || Double.isInfinite(alpha)) {
            throw new IllegalArgumentException("alpha must be a finite number >= 0, got " + alpha);
        }
        List<int[]> order = enumerationOrder(grids, policy);
        if (order.isEmpty()) {
            throw new IllegalArgumentException("no candidate grid");
        }
        if (LLAVA_NEXT.equals(policy)) {
            return selectLlavaNext(width, height, order, tile);
        }
        if (RELAXED.equals(policy)) {
            return selectRelaxed(width, height, order, tile, alpha);
        }
        return selectInternvl(width, height, order, tile);
    }

    /** The candidates, duplicates removed, in the order the policy visits them. */
    public static List<int[]> enumerationOrder(List<int[]> grids, String policy) {
        List<int[]> unique = new ArrayList<int[]>();
        for (int[] g : grids) {
            if (g.length != 2 || g[0] < 1 || g[1] < 1) {
                throw new IllegalArgumentException("a grid is two positive integers (m, n)");
            }
            boolean seen = false;
            for (int[] u : unique) {
                if (u[0] == g[0] && u[1] == g[1]) {
                    seen = true;
                    break;
                }
            }
            if (!seen) {
                unique.add(new int[] {g[0], g[1]});
            }
        }
        Comparator<int[]> order;
        if (LLAVA_NEXT.equals(policy)) {
            // LLaVA-NeXT's possible resolutions: m outer, n inner, ascending.
            order = new Comparator<int[]>() {
                @Override
                public int compare(int[] a, int[] b) {
                    return a[0] != b[0] ? Integer.compare(a[0], b[0]) : Integer.compare(a[1], b[1]);
                }
            };
        } else if (RELAXED.equals(policy)) {
            // Largest grid first so that the smaller grid wins a near tie; ties by m, then n, descending.
            order = new Comparator<int[]>() {
                @Override
                public int compare(int[] a, int[] b) {
                    long ta = (long) a[0] * a[1];
                    long tb = (long) b[0] * b[1];
                    if (ta != tb) {
                        return Long.compare(tb, ta);
                    }
                    return a[0] != b[0] ? Integer.compare(b[0], a[0]) : Integer.compare(b[1], a[1]);
                }
            };
        } else if (INTERNVL.equals(policy)) {
            // InternVL sorts its target ratios by tile count; ties by m ascending.
            order = new Comparator<int[]>() {
                @Override
                public int compare(int[] a, int[] b) {
                    long ta = (long) a[0] * a[1];
                    long tb = (long) b[0] * b[1];
                    if (ta != tb) {
                        return Long.compare(ta, tb);
                    }
                    return Integer.compare(a[0], b[0]);
                }
            };
        } else {
            throw new IllegalArgumentException("unknown tiling policy \"" + policy + "\"");
        }
        Collections.sort(unique, order);
        return unique;
    }

    /** {effective, wasted} pixels when a width x height image is fitted into the grid's canvas. */
    public static long[] resolutionFit(int width, int height, int[] grid, int tile) {
        long canvasW = (long) tile * grid[0];
        long canvasH = (long) tile * grid[1];
        double scale = Math.min((double) canvasW / width, (double) canvasH / height);
        // Python's int() truncates toward zero; the products are positive.
        long effective = Math.min((long) (width * scale) * (long) (height * scale), (long) width * height);
        return new long[] {effective, canvasW * canvasH - effective};
    }

    private static int[] selectLlavaNext(int width, int height, List<int[]> order, int tile) {
        long best = 0;
        long least = Long.MAX_VALUE;
        int[] fit = order.get(0);
        for (int[] grid : order) {
            long[] ew = resolutionFit(width, height, grid, tile);
            if (ew[0] > best || (ew[0] == best && ew[1] < least)) {
                best = ew[0];
                least = ew[1];
                fit = grid;
            }
        }
        return fit.clone();
    }

    private static int[] selectRelaxed(int width, int height, List<int[]> order, int tile, double alpha) {
        long best = 0;
        long least = Long.MAX_VALUE;
        int[] fit = order.get(order.size() - 1);
        for (int[] grid : order) {
            long[] ew = resolutionFit(width, height, grid, tile);
            long gain = ew[0] - best;
            double slack = alpha * best;
            // gain is far below 2^53, so (double) gain is exact, as Python's int/float comparison is.
            if ((double) gain > slack || ((double) -gain < slack && ew[1] < least)) {
                best = ew[0];
                least = ew[1];
                fit = grid;
            }
        }
        return fit.clone();
    }

    private static int[] selectInternvl(int width, int height, List<int[]> order, int tile) {
        double aspect = (double) width / height;
        double area = (double) width * height;
        double bestDiff = Double.POSITIVE_INFINITY;
        int[] fit = order.get(0);
        for (int[] grid : order) {
            double diff = Math.abs(aspect - (double) grid[0] / grid[1]);
            if (diff < bestDiff) {
                bestDiff = diff;
                fit = grid;
            } else if (diff == bestDiff && area > 0.5 * tile * tile * grid[0] * grid[1]) {
                fit = grid;
            }
        }
        return fit.clone();
    }
}
