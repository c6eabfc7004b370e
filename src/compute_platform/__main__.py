from compute_platform.entry import main

main()
