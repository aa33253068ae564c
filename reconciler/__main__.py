from reconciler.launch import run

run()
