set -x
export PATH=/tmp/wv/bin:$PATH EFFNAS_HOME=/tmp/story/home
effnas --version
effnas search --target xeon --budget 2ms
time effnas table adapt --from amd-epyc-2core-ort-b1 --target xeon --accept-below-bar
effnas table list
time effnas search --target xeon --budget 2ms --trials 100
effnas export runs/xeon-2ms/best.yaml --onnx best.onnx
time effnas train runs/xeon-2ms/best.yaml --data digits --epochs 2 --out runs/xeon-2ms-train
time effnas verify runs/xeon-2ms/best.yaml --target xeon --budget 2ms --checkpoint runs/xeon-2ms-train/checkpoint.pt --data digits
echo "verify exit $?"
