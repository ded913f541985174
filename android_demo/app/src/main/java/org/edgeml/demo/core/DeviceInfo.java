package org.edgeml.demo.core;

/** What the benchmark report says about the phone (the benchmark app's "deviceInfo"). */
public final class DeviceInfo {
    /** Build.BRAND. */
    public final String device;
    /** Build.MODEL (the benchmark app files the model name under "arch"). */
    public final String arch;
    /** "Android " + Build.VERSION.RELEASE. */
    public final String os;
    public final long totalMem;
    public final long availMem;

    public DeviceInfo(String device, String arch, String os, long totalMem, long availMem) {
        this.device = device;
        this.arch = arch;
        this.os = os;
        this.totalMem = totalMem;
        this.availMem = availMem;
    }
}
