package org.edgeml.demo.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class FilesTest {
    @Rule
    public TemporaryFolder tmp = new TemporaryFolder();

    private static void write(File f, String text) throws IOException {
        FileOutputStream out = new FileOutputStream(f);
        try {
            out.write(text.getBytes("UTF-8"));
        } finally {
            out.close();
        }
    }

    @Test
    public void firstProgramOfAFolderAndItsManifest() throws Exception {
        File dir = tmp.newFolder("models");
        write(new File(dir, "b_xnnpack_fp32.pte"), "x");
        write(new File(dir, "a_xnnpack_int8.pte"), "x");
        write(new File(dir, "a_xnnpack_int8.json"), ManifestTest.fixture(ManifestTest.CLASSIFIER));
        write(new File(dir, "notes.txt"), "x");
        ArtifactFolder a = ArtifactFolder.first(dir);
        assertEquals("a_xnnpack_int8.pte", a.program.getName());
        assertTrue(a.hasManifest());
        assertEquals("mobilenetv2", a.readManifest().modelName);
        ArtifactFolder b = ArtifactFolder.of(new File(dir, "b_xnnpack_fp32.pte"));
        assertFalse(b.hasManifest());
        try {
            b.readManifest();
            fail("missing manifest must be an IOException");
        } catch (IOException e) {
            assertTrue(e.getMessage().contains("b_xnnpack_fp32.json"));
        }
    }

    @Test
    public void emptyFolderAndBrokenManifestAreClearErrors() throws Exception {
        File dir = tmp.newFolder("empty");
        try {
            ArtifactFolder.first(dir);
            fail();
        } catch (IOException e) {
            assertTrue(e.getMessage().contains("no .pte"));
        }
        write(new File(dir, "m_xnnpack_fp32.pte"), "x");
        write(new File(dir, "m_xnnpack_fp32.json"), "{\"format_version\": 1,");
        try {
            ArtifactFolder.first(dir).readManifest();
            fail();
        } catch (ManifestException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith("m_xnnpack_fp32.json: malformed JSON"));
        }
    }

    @Test
    public void labels() {
        Labels l = Labels.parse("tench\r\ngoldfish  \n\nshark\n\n");
        assertEquals(4, l.size());
        assertEquals("goldfish", l.name(1));
        assertEquals("class 2", l.name(2));
        assertEquals("class 1000", l.name(1000));
        assertEquals("labels/imagenet-1k.txt", Labels.assetPath("imagenet-1k"));
        assertNull(Labels.assetPath("../secrets"));
        assertNull(Labels.assetPath(null));
    }
}
