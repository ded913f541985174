package org.edgeml.demo.core;

/** A manifest (or another edgeml JSON file) is missing a field or has one of the wrong type. */
public class ManifestException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ManifestException(String message) {
        super(message);
    }
}
