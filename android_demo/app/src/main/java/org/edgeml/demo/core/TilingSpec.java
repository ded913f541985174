package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The manifest's preprocessing.tiling entry for a tile encoder (BlueLM-V-style dynamic
 * resolution): tile size, grid policy, relaxation alpha, candidate limits and encoder batch.
 *
 * <p>Candidates follow {@code edgeml.dynres}: with max_grid, every (m, n) with m, n &lt;= max_grid;
 * with max_grid null, InternVL's every (m, n) with m * n &lt;= max_tiles (6 when absent); then, when
 * max_tiles is set, grids with more tiles are dropped.
 */
public final class TilingSpec {
    public final int tile;
    public final String policy;
    public final double alpha;
    /** 0 when the manifest has max_grid null. */
    public final int maxGrid;
    /** 0 when the manifest has no max_tiles. */
    public final int maxTiles;
    /** Tiles per encoder call. */
    public final int batch;
    /** Whether a global thumbnail follows the m*n tiles (BlueLM: yes). */
    public final boolean thumbnail;

    public TilingSpec(int tile, String policy, double alpha, int maxGrid, int maxTiles, int batch, boolean thumbnail) {
        if (tile < 1) {
            throw new ManifestException("tiling.tile must be >= 1, got " + tile);
        }
        if (!TileSelector.isPolicy(policy)) {
            throw new ManifestException("tiling.policy \"" + policy + "\" is not one of relaxed, llava_next, internvl");
        }
        if (!(alpha >= 0) || Double.isInfinite(alpha)) {
            throw new ManifestException("tiling.alpha must be a finite number >= 0, got " + alpha);
        }
        if (maxGrid < 0 || maxTiles < 0) {
            throw new ManifestException("tiling.max_grid and tiling.max_tiles must be positive (0: not set)");
        }
        if (batch < 1) {
            throw new ManifestException("tiling.batch must be >= 1, got " + batch);
        }
        this.tile = tile;
        this.policy = policy;
        this.alpha = alpha;
        this.maxGrid = maxGrid;
        this.maxTiles = maxTiles;
        this.batch = batch;
        this.thumbnail = thumbnail;
    }

    /** The candidate grids as a list of {m, n} (unordered: the selector orders them by policy). */
    public List<int[]> candidates() {
        return TileSelector.candidates(maxGrid, maxTiles);
    }

    static TilingSpec fromJson(Map<String, Object> t, String path) {
        int tile = (int) JsonFields.integer(t, "tile", path);
        String policy = JsonFields.optString(t, "policy", path, "relaxed");
        double alpha = JsonFields.optNumber(t, "alpha", path, 0.1);
        int maxGrid = (int) JsonFields.optInteger(t, "max_grid", path, 0);
        int maxTiles = (int) JsonFields.optInteger(t, "max_tiles", path, 0);
        if (t.containsKey("max_grid") && t.get("max_grid") != null && maxGrid < 1) {
            throw new ManifestException("field " + path + ".max_grid must be >= 1, got " + maxGrid);
        }
        if (t.containsKey("max_tiles") && t.get("max_tiles") != null && maxTiles < 1) {
            throw new ManifestException("field " + path + ".max_tiles must be >= 1, got " + maxTiles);
        }
        if (!t.containsKey("max_grid")) {
            maxGrid = 3; // edgeml.dynres default for relaxed / llava_next
            if ("internvl".equals(policy)) {
                maxGrid = 0;
            }
        }
        int batch = (int) JsonFields.optInteger(t, "batch", path, 1);
        Object thumb = t.get("thumbnail");
        boolean thumbnail = !(thumb instanceof Boolean) || ((Boolean) thumb).booleanValue();
        return new TilingSpec(tile, policy, alpha, maxGrid, maxTiles, batch, thumbnail);
    }

    @Override
    public String toString() {
        List<String> parts = new ArrayList<String>();
        parts.add("tile " + tile);
        parts.add(policy + (policy.equals("relaxed") ? " (alpha " + alpha + ")" : ""));
        if (maxGrid > 0) {
            parts.add("grids up to " + maxGrid + "x" + maxGrid);
        }
        if (maxTiles > 0) {
            parts.add("at most " + maxTiles + " tiles");
        }
        parts.add("batch " + batch);
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < parts.size(); i++) {
            sb.append(i == 0 ? "" : ", ").append(parts.get(i));
        }
        return sb.toString();
    }
}
