# Sourced by run.sh and quantize_speed.sh: the disk-speed reference. cp_reference MODEL_DIR
# WORK_DIR copies up to CP_GB (default 12) GB of MODEL_DIR's shards into WORK_DIR/model-copy and
# syncs (moeq's writers fsync their outputs, so the reference waits for the disk too), measured
# by the caller's `run` as "cp"; the cp_bytes line goes to $res. Leaves the shard list in
# cp_files and removes the copy.
cp_reference() {
  local model=$1 dir=$2 f sz
  local cp_limit=$(( ${CP_GB:-12} * 1000000000 ))
  cp_files=() cp_total=0
  for f in "$model"/*.safetensors; do
    sz=$(stat -c %s "$f")
    if (( ${#cp_files[@]} > 0 && cp_total + sz > cp_limit )); then break; fi
    cp_files+=("$f"); cp_total=$((cp_total + sz))
  done
  mkdir -p "$dir/model-copy"
  echo "{\"tool\": \"cp_bytes\", \"bytes\": $cp_total}" >> "$res"
  run cp sh -c 'dst=$1; shift; cp "$@" "$dst" && sync' sh "$dir/model-copy/" "${cp_files[@]}"
  rm -rf "$dir/model-copy"
}
