#!/usr/bin/env bash
# The Android demo's checks on a machine with no phone and no Gradle (see android_demo/README.md):
#   1. compile the app's Android-free logic (org.edgeml.demo.core) for Java 8 against android.jar;
#   2. compile ALL app sources against android.jar + ExecuTorch's Java API (classes.jar from the
#      npm package react-native-executorch@0.9.3), so an API mismatch or a typo fails here;
#   3. run the JUnit 4 tests of the core on the JVM (real photos from ../shared/images, the tile
#      cases edgeml generates, the preprocessing reference edgeml computes);
#   4. dex + aapt + zipalign + apksigner the app into a signed APK and `apksigner verify` it.
# Prints one line per check and closes with "N passed, N failed"; exits non-zero on any failure.
#
# Environment: EDGEML_PYTHON=<python with edgeml installed> regenerates the preprocessing
# reference with edgeml's own code (otherwise the committed file is used); CI=true is fine.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="$ROOT/android_demo"
SHARED="${EDGEML_SHARED:-$ROOT/../shared}"
CACHE="$DEMO/.ci-cache"
WORK="$DEMO/.ci-build"
RNE_VERSION="0.9.3"

passed=0
failed=0
check() { # check NAME COMMAND... : run, record, print one line
    local name="$1"; shift
    local log="$WORK/logs/$(echo "$name" | tr -c 'A-Za-z0-9_\n-' '_').log"
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name (log: ${log#$ROOT/})"; tail -n 40 "$log" | sed 's/^/    /'
    fi
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}
die() { # setup failure: counts as one failed check
    echo "FAIL setup: $*"; failed=$((failed + 1)); finish
}

rm -rf "$WORK" && mkdir -p "$WORK/logs" "$CACHE" || die "cannot create $WORK"

# ---- tools -----------------------------------------------------------------------------------
need_apt=()
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/junit4.jar ] || need_apt+=(junit4)
command -v aapt >/dev/null 2>&1 || need_apt+=(aapt)
command -v zipalign >/dev/null 2>&1 || need_apt+=(zipalign)
command -v apksigner >/dev/null 2>&1 || need_apt+=(apksigner)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}"; } \
        >"$WORK/logs/apt.log" 2>&1 || { tail -n 20 "$WORK/logs/apt.log"; die "apt-get install ${need_apt[*]}"; }
fi
JUNIT_CP="/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar"

# android.jar (API 23) and dx from the two Debian packages kept in shared/android.
SDK="$CACHE/android-sdk"
ANDROID_JAR="$SDK/usr/lib/android-sdk/platforms/android-23/android.jar"
DX_JAR="$SDK/usr/lib/android-sdk/build-tools/debian/lib/dx.jar"
if [ ! -f "$ANDROID_JAR" ] || [ ! -f "$DX_JAR" ]; then
    [ -d "$SHARED/android" ] || die "$SHARED/android (the android.jar and dx .debs) is missing"
    rm -rf "$SDK" && mkdir -p "$SDK"
    for deb in "$SHARED"/android/libandroid-23-java_*.deb "$SHARED"/android/dalvik-exchange_*.deb; do
        [ -f "$deb" ] || die "missing $deb"
        dpkg-deb -x "$deb" "$SDK" || die "dpkg-deb -x $deb"
    done
fi
[ -f "$ANDROID_JAR" ] && [ -f "$DX_JAR" ] || die "android.jar or dx.jar not found after extracting the .debs"

# ExecuTorch's Java API: classes.jar inside the npm package react-native-executorch.
ET_JAR="$CACHE/react-native-executorch-$RNE_VERSION/classes.jar"
if [ ! -f "$ET_JAR" ]; then
    (cd "$CACHE" && npm pack --silent "react-native-executorch@$RNE_VERSION" >"$WORK/logs/npm.log" 2>&1) \
        || { tail -n 20 "$WORK/logs/npm.log"; die "npm pack react-native-executorch@$RNE_VERSION"; }
    mkdir -p "$(dirname "$ET_JAR")"
    tar -xzf "$CACHE/react-native-executorch-$RNE_VERSION.tgz" -C "$CACHE" package/android/libs/classes.jar \
        || die "classes.jar not found in react-native-executorch-$RNE_VERSION.tgz"
    mv "$CACHE/package/android/libs/classes.jar" "$ET_JAR" && rm -rf "$CACHE/package" \
        "$CACHE/react-native-executorch-$RNE_VERSION.tgz"
fi

# ---- inputs of the JVM tests -----------------------------------------------------------------
RES="$DEMO/app/src/test/resources"
REFERENCE="$RES/preprocess_reference.bin"
if [ -n "${EDGEML_PYTHON:-}" ]; then
    REFERENCE="$WORK/preprocess_reference.bin"
    check "regenerate the preprocessing reference with edgeml ($EDGEML_PYTHON)" \
        "$EDGEML_PYTHON" "$DEMO/tools/make_preprocess_reference.py" --images "$SHARED/images" --out "$REFERENCE"
    [ -f "$REFERENCE" ] || REFERENCE="$RES/preprocess_reference.bin"
fi
TILE_CASES="$RES/tile_cases.json"
if [ ! -f "$TILE_CASES" ] && [ -n "${EDGEML_PYTHON:-}" ]; then
    # Until the committed cases file lands, test against what edgeml generates now.
    TILE_CASES="$WORK/tile_cases.json"
    (cd "$ROOT" && "$EDGEML_PYTHON" -m edgeml.dynres.cases --out "$TILE_CASES") >"$WORK/logs/cases.log" 2>&1
fi

# ---- 1 + 2: compile --------------------------------------------------------------------------
SRC="$DEMO/app/src/main"
# Gradle takes the package name from `namespace` in app/build.gradle; aapt needs it in the manifest.
PACKAGE=$(sed -nE 's/^[[:space:]]*namespace[[:space:]]+"([^"]+)".*/\1/p' "$DEMO/app/build.gradle" | head -n 1)
[ -n "$PACKAGE" ] || die "no namespace in android_demo/app/build.gradle"
MANIFEST="$WORK/AndroidManifest.xml"
sed -E "0,/<manifest /s//<manifest package=\"$PACKAGE\" /" "$SRC/AndroidManifest.xml" >"$MANIFEST"
grep -q "<manifest package=\"$PACKAGE\"" "$MANIFEST" || die "cannot add package=$PACKAGE to the manifest"
JAVAC8=(javac -encoding UTF-8 -source 8 -target 8 -Xlint:-options -Xlint:unchecked -Werror -bootclasspath "$ANDROID_JAR")
mkdir -p "$WORK/core" "$WORK/app" "$WORK/gen" "$WORK/test"
compile_core() {
    if grep -rln '^import android\.' "$SRC/java/org/edgeml/demo/core"; then
        echo "the core classes above import android.*: they must run on a plain JVM"; return 1
    fi
    "${JAVAC8[@]}" -d "$WORK/core" "$SRC"/java/org/edgeml/demo/core/*.java
}
check "compile core (Java 8, against android.jar API 23, no android.* imports)" compile_core
check "generate R.java with aapt" aapt package -f -m -J "$WORK/gen" -M "$MANIFEST" \
    -S "$SRC/res" -I "$ANDROID_JAR"
check "compile ALL app sources against android.jar + ExecuTorch classes.jar" \
    "${JAVAC8[@]}" -classpath "$ET_JAR" -d "$WORK/app" \
    $(find "$SRC/java" "$WORK/gen" -name '*.java' | sort)

# ---- 3: JUnit --------------------------------------------------------------------------------
TEST_SRC="$DEMO/app/src/test/java"
if javac -encoding UTF-8 -Xlint:-options -d "$WORK/test" -cp "$WORK/core:$JUNIT_CP" \
        $(find "$TEST_SRC" -name '*.java' | sort) >"$WORK/logs/compile-tests.log" 2>&1; then
    passed=$((passed + 1)); echo "ok   compile JVM tests"
    TESTS=$(cd "$TEST_SRC" && find . -name '*Test.java' | sed 's#^\./##; s#\.java$##; s#/#.#g' | sort)
    java -Djava.awt.headless=true -cp "$WORK/core:$WORK/test:$JUNIT_CP:$RES" \
        -Dedgeml.images="$SHARED/images" -Dedgeml.preprocessReference="$REFERENCE" \
        -Dedgeml.tileCases="$TILE_CASES" \
        org.edgeml.demo.core.TestMain $TESTS >"$WORK/logs/junit.log" 2>&1
    junit_rc=$?
    sed 's/^/  /' "$WORK/logs/junit.log"
    line=$(grep -E '^JVM tests: [0-9]+ passed, [0-9]+ failed$' "$WORK/logs/junit.log" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | sed -E 's/^JVM tests: ([0-9]+) passed, ([0-9]+) failed$/\1/')
        f=$(echo "$line" | sed -E 's/^JVM tests: ([0-9]+) passed, ([0-9]+) failed$/\2/')
        passed=$((passed + p)); failed=$((failed + f))
        [ "$junit_rc" -ne 0 ] && [ "$f" -eq 0 ] && { failed=$((failed + 1)); echo "FAIL JUnit runner exited $junit_rc"; }
    else
        failed=$((failed + 1)); echo "FAIL JUnit run produced no summary (exit $junit_rc)"
    fi
else
    failed=$((failed + 1)); echo "FAIL compile JVM tests"; tail -n 40 "$WORK/logs/compile-tests.log" | sed 's/^/    /'
fi

# ---- 4: APK ----------------------------------------------------------------------------------
# dx cannot read classes.jar (Java 11 bytecode), so the APK holds the app's own code, resources
# and assets; ExecuTorch's classes and native libraries come from the AAR in a Gradle build.
APK_DIR="$WORK/apk"
mkdir -p "$APK_DIR"
build_apk() ( # a subshell, so that set -e stops this step only
    set -e
    java -cp "$DX_JAR" com.android.dx.command.Main --dex --min-sdk-version=23 \
        --output="$APK_DIR/classes.dex" "$WORK/app"
    aapt package -f -M "$MANIFEST" -S "$SRC/res" -A "$SRC/assets" -I "$ANDROID_JAR" \
        --min-sdk-version 23 --target-sdk-version 23 --version-code 1 --version-name 0.1.0 \
        -0 pte -F "$APK_DIR/app.unaligned.apk"
    (cd "$APK_DIR" && aapt add app.unaligned.apk classes.dex)
    zipalign -f 4 "$APK_DIR/app.unaligned.apk" "$APK_DIR/app.aligned.apk"
    keytool -genkeypair -keystore "$APK_DIR/debug.keystore" -storepass android -keypass android \
        -alias edgeml -keyalg RSA -keysize 2048 -validity 365 -dname "CN=edgeml demo debug" -noprompt
    apksigner sign --ks "$APK_DIR/debug.keystore" --ks-pass pass:android --key-pass pass:android \
        --out "$APK_DIR/edgeml-demo-debug.apk" "$APK_DIR/app.aligned.apk"
)
check "dex + aapt + zipalign + apksigner -> android_demo/.ci-build/apk/edgeml-demo-debug.apk" build_apk
check "apksigner verify" apksigner verify --verbose "$APK_DIR/edgeml-demo-debug.apk"
check "APK holds the manifest, both activities, classes.dex and the assets" bash -c '
    apk="$0"
    aapt dump badging "$apk" | grep -q "package: name='"'"'$1'"'"'" &&
    aapt dump xmltree "$apk" AndroidManifest.xml | grep -q "org.edgeml.demo.BenchmarkActivity\|\.BenchmarkActivity" &&
    aapt dump xmltree "$apk" AndroidManifest.xml | grep -q "\.MainActivity\|org.edgeml.demo.MainActivity" &&
    aapt list "$apk" | grep -qx classes.dex &&
    aapt list "$apk" | grep -qx assets/sample.jpg &&
    aapt list "$apk" | grep -qx assets/labels/imagenet-1k.txt' "$APK_DIR/edgeml-demo-debug.apk" "$PACKAGE"

finish
