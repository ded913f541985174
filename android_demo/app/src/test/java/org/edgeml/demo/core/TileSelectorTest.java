package org.edgeml.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.Test;

/**
 * Tile selection against the cases JSON that edgeml generates
 * ({@code python -m edgeml.dynres.cases}), plus a table of expected grids written out by hand.
 */
public class TileSelectorTest {

    @SuppressWarnings("unchecked")
    @Test
    public void everyGeneratedCaseMatchesEdgeml() throws Exception {
        Map<String, Object> doc = Json.parseObject(ArtifactFolder.readUtf8(
                TestFiles.resource("edgeml.tileCases", "tile_cases.json")));
        int tile = (int) JsonFields.integer(doc, "tile", "");
        List<Object> cases = JsonFields.array(doc, "cases", "");
        assertTrue("the cases file holds only " + cases.size() + " cases", cases.size() >= 20);
        Set<String> policies = new HashSet<String>();
        StringBuilder mismatches = new StringBuilder();
        int bad = 0;
        for (int i = 0; i < cases.size(); i++) {
            Map<String, Object> c = (Map<String, Object>) cases.get(i);
            String where = "cases[" + i + "]";
            int w = (int) JsonFields.integer(c, "width", where);
            int h = (int) JsonFields.integer(c, "height", where);
            String policy = JsonFields.string(c, "policy", where);
            int maxGrid = (int) JsonFields.optInteger(c, "max_grid", where, 0);
            int maxTiles = (int) JsonFields.optInteger(c, "max_tiles", where, 0);
            double alpha = JsonFields.optNumber(c, "alpha", where, 0.1);
            long[] expected = JsonFields.longs(JsonFields.require(c, "grid", where), where + ".grid");
            int[] got = TileSelector.select(w, h, tile, policy, alpha, TileSelector.candidates(maxGrid, maxTiles));
            policies.add(policy);
            if (got[0] != expected[0] || got[1] != expected[1]) {
                bad++;
                if (bad <= 10) {
                    mismatches.append("\n  ").append(w).append('x').append(h).append(' ').append(policy)
                            .append(" max_grid=").append(maxGrid).append(" max_tiles=").append(maxTiles)
                            .append(" alpha=").append(alpha).append(": expected ").append(expected[0]).append('x')
                            .append(expected[1]).append(", got ").append(got[0]).append('x').append(got[1]);
                }
            }
        }
        if (bad > 0) {
            fail(bad + " of " + cases.size() + " cases differ from edgeml:" + mismatches);
        }
        assertTrue("all three policies must be covered, got " + policies,
                policies.contains("relaxed") && policies.contains("llava_next") && policies.contains("internvl"));
        System.out.println("  tile selection: " + cases.size() + " edgeml cases match");
    }

    private static String grid(int w, int h, String policy, int maxGrid, int maxTiles) {
        int[] g = TileSelector.select(w, h, 384, policy, 0.1, TileSelector.candidates(maxGrid, maxTiles));
        return g[0] + "x" + g[1];
    }

    @Test
    public void expectedGrids() {
        // image w x h -> llava_next, internvl (max 6 tiles), relaxed; tile 384, grids up to 3x3.
        Object[][] rows = {
            {394, 390, "2x2", "1x1", "1x1"},
            {380, 393, "1x2", "1x1", "1x1"},
            {380, 76, "1x1", "5x1", "1x1"},
            {500, 102, "2x1", "5x1", "2x1"},
            {800, 600, "3x2", "3x2", "2x2"},
        };
        for (Object[] r : rows) {
            int w = (Integer) r[0];
            int h = (Integer) r[1];
            assertEquals(w + "x" + h + " llava_next", r[2], grid(w, h, "llava_next", 3, 0));
            assertEquals(w + "x" + h + " internvl", r[3], grid(w, h, "internvl", 0, 6));
            assertEquals(w + "x" + h + " relaxed", r[4], grid(w, h, "relaxed", 3, 0));
        }
        assertEquals("phone screenshot, grids up to 4x4", "2x4", grid(1080, 2400, "relaxed", 4, 0));
    }

    @Test
    public void relaxedEnumeratesLargestFirst() {
        List<int[]> order = TileSelector.enumerationOrder(TileSelector.candidates(3, 0), "relaxed");
        StringBuilder sb = new StringBuilder();
        for (int[] g : order) {
            sb.append(g[0]).append('x').append(g[1]).append(' ');
        }
        // Tile count descending, then m, then n: edgeml.dynres.enumeration_order key (-m*n, -m, -n).
        assertEquals("3x3 3x2 2x3 2x2 3x1 1x3 2x1 1x2 1x1 ", sb.toString());
    }

    @Test
    public void candidatesHonourLimits() {
        assertEquals(9, TileSelector.candidates(3, 0).size());
        // InternVL: every (m, n) with m * n <= 6: 1x1..1x6, 2x1..2x3, 3x1, 3x2, 4x1, 5x1, 6x1.
        assertEquals(14, TileSelector.candidates(0, 6).size());
        for (int[] g : TileSelector.candidates(4, 6)) {
            assertTrue(g[0] * g[1] <= 6);
        }
    }

    @Test
    public void extremeSizesNeverCrash() {
        int[][] sizes = {{1, 1}, {1, 10000}, {10000, 1}, {20000, 20000}, {2, 1}};
        String[] policies = {"relaxed", "llava_next", "internvl"};
        for (int[] s : sizes) {
            for (String p : policies) {
                int[] g = TileSelector.select(s[0], s[1], 384, p, 0.1, TileSelector.candidates(3, 0));
                assertTrue(g[0] >= 1 && g[0] <= 3 && g[1] >= 1 && g[1] <= 3);
            }
        }
    }

    @Test(expected = IllegalArgumentException.class)
    public void unknownPolicyIsRejected() {
        TileSelector.select(100, 100, 384, "anyres", 0.1, TileSelector.candidates(3, 0));
    }
}
