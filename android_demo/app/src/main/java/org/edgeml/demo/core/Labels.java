package org.edgeml.demo.core;

import java.util.ArrayList;
import java.util.List;

/**
 * Class names: the ones the manifest carries inline ({@code outputs[0].labels}: a user model's
 * --labels, a Hugging Face id2label), or a label set it names ({@code model.config.labels}, e.g.
 * "imagenet-1k") read from a text file with one name per line (assets/labels/NAME.txt). Without
 * either the app shows class indices.
 */
public final class Labels {
    private final List<String> names;

    private Labels(List<String> names) {
        this.names = names;
    }

    /** Labels from file text: one per line, trailing whitespace and a final empty line ignored. */
    public static Labels parse(String text) {
        List<String> names = new ArrayList<String>();
        String[] lines = text.split("\r?\n", -1);
        int end = lines.length;
        while (end > 0 && lines[end - 1].trim().isEmpty()) {
            end--;
        }
        for (int i = 0; i < end; i++) {
            String line = lines[i];
            int e = line.length();
            while (e > 0 && Character.isWhitespace(line.charAt(e - 1))) {
                e--;
            }
            names.add(line.substring(0, e));
        }
        return new Labels(names);
    }

    /** The names a manifest carries inline ({@code outputs[i].labels}). */
    public static Labels of(List<String> names) {
        return new Labels(new ArrayList<String>(names));
    }

    /** No names: every class shows as "class N". */
    public static Labels none() {
        return new Labels(new ArrayList<String>());
    }

    /** The asset path of a label set, or null when the name is not a safe file name. */
    public static String assetPath(String labelSet) {
        if (labelSet == null || !labelSet.matches("[A-Za-z0-9._-]+") || labelSet.startsWith(".")) {
            return null;
        }
        return "labels/" + labelSet + ".txt";
    }

    public int size() {
        return names.size();
    }

    public String name(int index) {
        if (index >= 0 && index < names.size() && !names.get(index).isEmpty()) {
            return names.get(index);
        }
        return "class " + index;
    }
}
