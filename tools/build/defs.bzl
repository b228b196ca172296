"""Build macros shared by hv packages."""

def hv_fuzz_test(name, srcs, deps = [], size = "medium", tags = [], **kwargs):
    """A libFuzzer target that is also a regular test.

    Under --config=fuzz the binary links libFuzzer (-fsanitize=fuzzer) and
    `bazel test` runs it for a bounded time; in other configurations it links a
    deterministic driver that feeds a bounded set of generated inputs.
    """
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + select({
            "//tools/build:fuzzing": [],
            "//conditions:default": ["//tools/build:fuzz_driver"],
        }),
        linkopts = select({
            "//tools/build:fuzzing": [
                "-fsanitize=fuzzer",
                # clang links as C here; UBSan needs its C++ runtime too.
                "-fsanitize-link-c++-runtime",
            ],
            "//conditions:default": [],
        }),
        args = select({
            "//tools/build:fuzzing": ["-max_total_time=45", "-rss_limit_mb=2048"],
            "//conditions:default": [],
        }),
        size = size,
        tags = tags + ["fuzz"],
        **kwargs
    )
