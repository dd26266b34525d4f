#!/usr/bin/env bash
# llmvec's CUDA path, measured on a GPU machine: the checks the issue notes record.
#
#   benchmarks/gpu.sh OUTPUT_FOLDER [PART...]        (default: every part, in this order)
#
# tests:      tests/test_cuda.py: every recipe on CUDA gives the CPU's vectors (tiny models).
# recipes:    PromptEOL / PCoTEOL / KE on SmolLM2 against their plain reference (float32).
# speed:      SmolLM2 KE (eager and compiled) and mean against llemb, in bfloat16.
# efficiency: SmolLM2 forward at long batch against the matmul peak (bfloat16 eager and
#             compiled, float32 eager).
# sts:        STS-B dev Spearman of SmolLM2 KE in bfloat16 and float32.
# minilm:     all-MiniLM-L6-v2 against sentence-transformers (float32).
# profile:    host time against GPU kernel time per batch, llmvec and the peer (profile_encode.py):
#             SmolLM2 KE against llemb, all-MiniLM-L6-v2 against sentence-transformers.
#
# Needs llmvec's dependencies with the bench extra and the packaged models; the data comes from
# $LLMVEC_DATA (default ../shared/data). Each step has a time limit ($STEP_TIMEOUT, 300 s) and
# the script goes on after a failed step; the JSON reports and gpu.log land in OUTPUT_FOLDER.
set -u
out=${1:?usage: benchmarks/gpu.sh OUTPUT_FOLDER [tests|recipes|speed|efficiency|sts|minilm|profile]...}
shift
python=${PYTHON:-python3}
data=${LLMVEC_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
mkdir -p "$out"
log="$out/gpu.log"

step() { # step NAME COMMAND...: run it under the time limit, log it, print its last lines
    local name=$1 began=$SECONDS status
    shift
    echo "== $name: $*" >>"$log"
    timeout "${STEP_TIMEOUT:-300}" "$@" >"$out/step.log" 2>&1
    status=$?
    cat "$out/step.log" >>"$log"
    echo "== $name: exit $status after $((SECONDS - began)) s"
    grep -v "it/s\]\|s/it\]" "$out/step.log" | tail -n 6
    rm -f "$out/step.log"
}

for part in "${@:-tests recipes speed efficiency sts minilm profile}"; do
    for name in $part; do
        case $name in
        tests)
            step cuda-tests "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py
            ;;
        recipes)
            step paper-recipes "$python" benchmarks/paper_recipes.py --device cuda \
                --output "$out/paper_recipes_cuda.json"
            ;;
        speed)
            step encode-speed "$python" benchmarks/encode_speed.py --device cuda \
                --dtype bfloat16 --repeats 3 --cases smollm2-ke smollm2-ke-uncached smollm2-ke-compiled smollm2-mean \
                --output "$out/encode_speed_cuda.json"
            ;;
        efficiency)
            step forward-efficiency-bf16 "$python" benchmarks/forward_efficiency.py \
                --device cuda --documents 512 --batch-size 64 --dtypes bfloat16 \
                --output "$out/forward_efficiency_cuda_bf16.json"
            step forward-efficiency-fp32 "$python" benchmarks/forward_efficiency.py \
                --device cuda --documents 512 --batch-size 64 --dtypes float32 --modes eager \
                --output "$out/forward_efficiency_cuda_fp32.json"
            ;;
        sts)
            for dtype in bfloat16 float32; do
                step "sts-dev-ke-$dtype" "$python" -m llmvec.cli eval sts --template ke \
                    --data "$data/stsbenchmark/sts-dev.csv" --device cuda --dtype "$dtype"
            done
            ;;
        minilm)
            step encode-speed-minilm "$python" benchmarks/encode_speed.py --device cuda \
                --dtype float32 --repeats 3 --cases minilm-mean \
                --output "$out/encode_speed_cuda_minilm.json"
            ;;
        profile)
            step profile-ke "$python" benchmarks/profile_encode.py --template ke --device cuda \
                --dtype bfloat16 --compare llemb --output "$out/profile_ke_cuda.json"
            step profile-minilm "$python" benchmarks/profile_encode.py --model all-minilm-l6-v2 \
                --pooling mean --device cuda --compare sentence-transformers \
                --output "$out/profile_minilm_cuda.json"
            ;;
        *)
            echo "unknown part $name (tests, recipes, speed, efficiency, sts, minilm, profile)" >&2
            exit 2
            ;;
        esac
    done
done
