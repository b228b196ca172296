// (gicv3 arch forward tests follow in the next commit)
