index_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3], true)
return 1
