package org.edgeml.demo;

import java.io.Closeable;
import org.edgeml.demo.core.ModelRunner;
import org.edgeml.demo.core.TensorData;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.ExecutorchRuntimeException;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/** An ExecuTorch program (org.pytorch.executorch.Module) behind the app's {@link ModelRunner}. */
final class ExecuTorchRunner implements ModelRunner, Closeable {
    private final Module module;
    // The timing loops feed the same input many times; wrap it once so that the measured time is
    // the program's, not a copy into a new native tensor.
    private TensorData lastInput;
    private EValue lastValue;

    private ExecuTorchRunner(Module module) {
        this.module = module;
    }

    /**
     * Load a .pte (memory-mapped) and its forward method. threads &lt;= 0 leaves the thread count
     * to the runtime. Throws ExecutorchRuntimeException with the runtime's error code on failure.
     */
    static ExecuTorchRunner load(String path, int threads) {
        Module module = threads > 0
                ? Module.load(path, Module.LOAD_MODE_MMAP, threads)
                : Module.load(path, Module.LOAD_MODE_MMAP);
        try {
            module.loadMethod("forward");
        } catch (RuntimeException e) {
            module.destroy();
            throw e;
        }
        return new ExecuTorchRunner(module);
    }

    /** The runtime's error code of a load failure, -1 for any other exception. */
    static int errorCode(Throwable t) {
        return t instanceof ExecutorchRuntimeException ? ((ExecutorchRuntimeException) t).getErrorCode() : -1;
    }

    @Override
    public TensorData forward(TensorData input) {
        if (input != lastInput) {
            lastValue = EValue.from(Tensor.fromBlob(input.data, input.shape));
            lastInput = input;
        }
        EValue[] outputs = module.forward(lastValue);
        if (outputs.length == 0 || !outputs[0].isTensor()) {
            throw new IllegalStateException("the program's first output is not a tensor");
        }
        Tensor out = outputs[0].toTensor();
        return new TensorData(out.getDataAsFloatArray(), out.shape());
    }

    /** Run forward with no inputs: the runtime fills them (what ExecuTorch's benchmark app does). */
    void forwardDefaultInputs() {
        module.forward();
    }

    /** The backends the forward method was lowered to, e.g. [XnnpackBackend]. */
    String[] backends() {
        try {
            return module.getMethodMetadata("forward").getBackends();
        } catch (RuntimeException e) {
            return new String[0];
        }
    }

    @Override
    public void close() {
        module.destroy();
    }
}
