package org.edgeml.demo.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * An artifact on disk: the {@code .pte} and its manifest {@code <same stem>.json}. The benchmark
 * mode and the "load from folder" path take a folder and use its first {@code .pte} in name order,
 * as ExecuTorch's benchmark app does.
 */
public final class ArtifactFolder {
    public final File program;
    public final File manifestFile;

    private ArtifactFolder(File program, File manifestFile) {
        this.program = program;
        this.manifestFile = manifestFile;
    }

    /** The .pte files of a folder, sorted by name. */
    public static List<File> programs(File folder) throws IOException {
        if (!folder.isDirectory()) {
            throw new IOException("model folder " + folder + " does not exist or is not a folder");
        }
        File[] files = folder.listFiles();
        List<File> out = new ArrayList<File>();
        if (files != null) {
            for (File f : files) {
                if (f.isFile() && f.getName().endsWith(".pte")) {
                    out.add(f);
                }
            }
        }
        Collections.sort(out);
        return out;
    }

    /** The first .pte of a folder (IOException if there is none) and its manifest path. */
    public static ArtifactFolder first(File folder) throws IOException {
        List<File> pte = programs(folder);
        if (pte.isEmpty()) {
            throw new IOException("no .pte file in " + folder + ": export one with edgeml export and push it there");
        }
        return of(pte.get(0));
    }

    public static ArtifactFolder of(File program) {
        return new ArtifactFolder(program, new File(program.getParentFile(), manifestName(program.getName())));
    }

    /** "m_xnnpack_int8.pte" -> "m_xnnpack_int8.json". */
    public static String manifestName(String programName) {
        int dot = programName.lastIndexOf('.');
        return (dot > 0 ? programName.substring(0, dot) : programName) + ".json";
    }

    public boolean hasManifest() {
        return manifestFile.isFile();
    }

    /** Parse the manifest; IOException if it is missing, ManifestException if it is malformed. */
    public Manifest readManifest() throws IOException {
        if (!hasManifest()) {
            throw new IOException("no manifest " + manifestFile.getName() + " next to " + program.getName()
                    + ": copy the .json that edgeml export wrote along with the .pte");
        }
        try {
            return Manifest.parse(readUtf8(manifestFile));
        } catch (IllegalArgumentException e) {
            throw new ManifestException(manifestFile.getName() + ": " + e.getMessage());
        }
    }

    public static String readUtf8(File f) throws IOException {
        InputStream in = new FileInputStream(f);
        try {
            return readUtf8(in);
        } finally {
            in.close();
        }
    }

    public static String readUtf8(InputStream in) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] chunk = new byte[16384];
        int n;
        while ((n = in.read(chunk)) > 0) {
            buf.write(chunk, 0, n);
        }
        return new String(buf.toByteArray(), "UTF-8");
    }
}
