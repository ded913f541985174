package org.edgeml.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void parsesAllValueKinds() {
        Map<String, Object> m = Json.parseObject(
                "{\"a\": 1, \"b\": -2.5e3, \"c\": \"x\\n\\u00e9\\\"\", \"d\": [true, false, null], \"e\": {}}");
        assertEquals(Long.valueOf(1), m.get("a"));
        assertEquals(-2500.0, (Double) m.get("b"), 0.0);
        assertEquals("x\n\u00e9\"", m.get("c"));
        List<?> d = (List<?>) m.get("d");
        assertEquals(Boolean.TRUE, d.get(0));
        assertEquals(Boolean.FALSE, d.get(1));
        assertNull(d.get(2));
        assertTrue(((Map<?, ?>) m.get("e")).isEmpty());
    }

    @Test
    public void keepsKeyOrderAndRoundTrips() {
        String text = "{\"z\": 1, \"a\": [1.5, \"s\"], \"m\": null}";
        Object v = Json.parse(text);
        assertEquals("[z, a, m]", ((Map<?, ?>) v).keySet().toString());
        assertEquals(v, Json.parse(Json.write(v)));
    }

    @Test
    public void readsPythonNonFiniteFloats() {
        List<?> l = (List<?>) Json.parse("[NaN, Infinity, -Infinity]");
        assertTrue(Double.isNaN((Double) l.get(0)));
        assertEquals(Double.POSITIVE_INFINITY, (Double) l.get(1), 0.0);
        assertEquals(Double.NEGATIVE_INFINITY, (Double) l.get(2), 0.0);
        // ...and never writes them: JSON has no NaN.
        assertEquals("[\n  null\n]", Json.write(Json.parse("[NaN]")));
    }

    @Test
    public void rejectsMalformedInput() {
        String[] bad = {"", "{", "{\"a\" 1}", "[1,]", "{\"a\": 1} x", "\"unterminated", "[01x]", "tru", "{1: 2}"};
        for (String s : bad) {
            try {
                Json.parse(s);
                fail("accepted malformed JSON: " + s);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage().startsWith("malformed JSON at offset"));
            }
        }
    }

    @Test
    public void bigIntegersBecomeDoubles() {
        assertEquals(Long.valueOf(9007199254740993L), Json.parse("9007199254740993"));
        assertTrue(Json.parse("123456789012345678901234567890") instanceof Double);
    }
}
