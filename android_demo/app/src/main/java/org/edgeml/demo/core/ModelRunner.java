package org.edgeml.demo.core;

/** Runs the program's forward method on one float32 input and returns its first output. */
public interface ModelRunner {
    TensorData forward(TensorData input) throws Exception;
}
