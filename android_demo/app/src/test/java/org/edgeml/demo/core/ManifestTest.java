package org.edgeml.demo.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Manifest parsing on fixtures built with edgeml's own Manifest class (tools/make_manifest_fixtures.py). */
public class ManifestTest {
    static String fixture(String name) throws Exception {
        return ArtifactFolder.readUtf8(TestFiles.resource("edgeml.none", "manifests/" + name));
    }

    static final String CLASSIFIER = "mobilenetv2_xnnpack_int8.json";
    static final String TILE_ENCODER = "bluelm_tile_encoder_b16_xnnpack_fp32.json";

    @Test
    public void classifierManifest() throws Exception {
        Manifest m = Manifest.parse(fixture(CLASSIFIER));
        assertEquals("mobilenetv2", m.modelName);
        assertEquals("mobilenetv2_xnnpack_int8.pte", m.artifactFile);
        assertEquals("xnnpack", m.backend);
        assertEquals("imagenet-1k", m.labels);
        assertEquals(1000, m.numClasses);
        assertEquals("int8_static_per_channel", m.quantizationScheme);
        assertEquals("1.5.1", m.executorchVersion);
        assertTrue(m.isClassifier());
        assertFalse(m.isTileEncoder());
        Preprocessing p = m.preprocessing;
        assertEquals(256, p.resizeShorter);
        assertEquals(224, p.crop);
        assertArrayEquals(new float[] {0.485f, 0.456f, 0.406f}, p.mean, 0f);
        assertArrayEquals(new float[] {0.229f, 0.224f, 0.225f}, p.std, 0f);
        assertEquals(1.0 / 255.0, p.scale, 0.0);
        assertArrayEquals(new long[] {1, 3, 224, 224}, m.imageInputShape(1));
        assertEquals("logits", m.outputs[0].kind);
    }

    @Test
    public void inlineLabels() throws Exception {
        Manifest plain = Manifest.parse(fixture(CLASSIFIER));
        assertTrue(plain.outputs[0].labels.isEmpty());
        String json = fixture(CLASSIFIER).replace("\"kind\": \"logits\",", "\"kind\": \"logits\", \"labels\": [\"cat\", \"dog\"],");
        Manifest m = Manifest.parse(json);
        assertEquals(java.util.Arrays.asList("cat", "dog"), m.outputs[0].labels);
        Labels names = Labels.of(m.outputs[0].labels);
        assertEquals("dog", names.name(1));
        assertEquals("class 2", names.name(2));
        try {
            Manifest.parse(fixture(CLASSIFIER).replace("\"kind\": \"logits\",", "\"kind\": \"logits\", \"labels\": [1],"));
            fail("a label that is not a string should not parse");
        } catch (ManifestException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("outputs[0].labels[0]"));
        }
    }

    @Test
    public void tileEncoderManifest() throws Exception {
        Manifest m = Manifest.parse(fixture(TILE_ENCODER));
        assertTrue(m.isTileEncoder());
        assertFalse(m.isClassifier());
        assertNull(m.labels);
        TilingSpec t = m.preprocessing.tiling;
        assertEquals(384, t.tile);
        assertEquals("relaxed", t.policy);
        assertEquals(0.1, t.alpha, 0.0);
        assertEquals(3, t.maxGrid);
        assertEquals(4, t.batch);
        assertEquals(9, t.candidates().size());
        assertArrayEquals(new float[] {0.5f, 0.5f, 0.5f}, m.preprocessing.mean, 0f);
        assertEquals(4, m.maxInputBatch());
        assertFalse(m.dynamicBatch());
    }

    @Test
    public void dynamicAxesAreRead() throws Exception {
        Map<String, Object> doc = Json.parseObject(fixture(TILE_ENCODER));
        @SuppressWarnings("unchecked")
        Map<String, Object> in = (Map<String, Object>) ((List<Object>) doc.get("inputs")).get(0);
        in.put("dynamic", Json.parse("{\"0\": [1, 8]}"));
        Manifest m = Manifest.parse(Json.write(doc));
        assertTrue(m.dynamicBatch());
        assertEquals(8, m.maxInputBatch());
    }

    private static String withField(String fixtureName, String path, Object value) throws Exception {
        Map<String, Object> doc = Json.parseObject(fixture(fixtureName));
        String[] parts = path.split("\\.");
        Map<String, Object> cur = doc;
        for (int i = 0; i < parts.length - 1; i++) {
            @SuppressWarnings("unchecked")
            Map<String, Object> next = (Map<String, Object>) cur.get(parts[i]);
            cur = next;
        }
        if (value == REMOVE) {
            cur.remove(parts[parts.length - 1]);
        } else {
            cur.put(parts[parts.length - 1], value);
        }
        return Json.write(doc);
    }

    private static final Object REMOVE = new Object();

    private static void assertRejected(String json, String messagePart) {
        try {
            Manifest.parse(json);
            fail("expected a ManifestException mentioning " + messagePart);
        } catch (ManifestException e) {
            assertTrue("message \"" + e.getMessage() + "\" should mention " + messagePart,
                    e.getMessage().contains(messagePart));
        }
    }

    @Test
    public void badManifestsSayWhatIsWrong() throws Exception {
        assertRejected(withField(CLASSIFIER, "format_version", 2L), "format_version 2");
        assertRejected(withField(CLASSIFIER, "model.name", REMOVE), "model.name");
        assertRejected(withField(CLASSIFIER, "preprocessing.mean", "red"), "preprocessing.mean");
        assertRejected(withField(CLASSIFIER, "preprocessing.interpolation", "nearest"), "nearest");
        assertRejected(withField(CLASSIFIER, "preprocessing.crop", 300L), "crop");
        assertRejected(withField(TILE_ENCODER, "preprocessing.tiling.policy", "anyres"), "anyres");
        assertRejected(withField(TILE_ENCODER, "preprocessing.tiling.batch", 0L), "batch");
    }

    @Test
    public void inputThatDoesNotFitThePreprocessingIsRejected() throws Exception {
        Map<String, Object> doc = Json.parseObject(fixture(CLASSIFIER));
        @SuppressWarnings("unchecked")
        Map<String, Object> in = (Map<String, Object>) ((List<Object>) doc.get("inputs")).get(0);
        in.put("shape", Json.parse("[1, 3, 256, 256]"));
        try {
            Manifest.parse(Json.write(doc));
            fail("a 256x256 input with a 224 crop must be rejected");
        } catch (ManifestException e) {
            assertTrue(e.getMessage().contains("224x224"));
        }
        // ...unless the spatial axes are dynamic over a range that holds 224.
        in.put("dynamic", Json.parse("{\"2\": [128, 512], \"3\": [128, 512]}"));
        assertArrayEquals(new long[] {1, 3, 224, 224}, Manifest.parse(Json.write(doc)).imageInputShape(1));
    }

    @Test
    public void modelWithoutPreprocessingStillParses() throws Exception {
        Manifest m = Manifest.parse(withField(CLASSIFIER, "preprocessing", null));
        assertNull(m.preprocessing);
        assertFalse(m.isTileEncoder());
    }
}
