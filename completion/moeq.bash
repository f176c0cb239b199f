# bash completion for the moeq tools (moeq-inspect, moeq-profile, moeq-eval, moeq-analyze,
# moeq-allocate, moeq-calibrate, moeq-quantize, moeq-report). Options are read from the tool's
# own --help, so they never drift from the binary; values of known choice options are completed,
# everything else as file names. Installed as share/bash-completion/completions/<tool>.
_moeq_tool() {
  local cur prev
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  case "$prev" in
    --log-level) COMPREPLY=($(compgen -W "trace debug info warn error off" -- "$cur")); return ;;
    --format) COMPREPLY=($(compgen -W "mlx gguf" -- "$cur")); return ;;
    --gguf-type) COMPREPLY=($(compgen -W "q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K" -- "$cur")); return ;;
    --protocol) COMPREPLY=($(compgen -W "reference mint llama" -- "$cur")); return ;;
    --objective) COMPREPLY=($(compgen -W "nrmse mse" -- "$cur")); return ;;
    --policy) COMPREPLY=($(compgen -W "mckp mckp-hotness tiered" -- "$cur")); return ;;
    --table) COMPREPLY=($(compgen -W "text markdown" -- "$cur")); return ;;
  esac
  if [[ "$cur" == -* ]]; then
    local opts
    opts=$("${COMP_WORDS[0]}" --help 2>/dev/null | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -o bashdefault -F _moeq_tool \
  moeq-inspect moeq-profile moeq-eval moeq-analyze moeq-allocate moeq-calibrate moeq-quantize moeq-report
