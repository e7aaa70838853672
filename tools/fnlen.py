#!/usr/bin/env python3
"""The longest functions of the product code (not tests, not tools/) at a git
revision: python3 tools/fnlen.py [REV] [N]. Counts lines from `fn` to its
closing brace (braces in strings and // comments ignored)."""
import re,sys,os,subprocess

rev=sys.argv[1] if len(sys.argv)>1 else "HEAD"
root=subprocess.run(["git","rev-parse","--show-toplevel"],capture_output=True,text=True).stdout.strip() or "."
files=subprocess.run(["git","ls-tree","-r","--name-only",rev],cwd=root,capture_output=True,text=True).stdout.split()
out=[]
for f in files:
    if not f.endswith(".rs") or f.startswith(("tests/","tools/")) or "/tests" in f or f.endswith("tests.rs"): continue
    src=subprocess.run(["git","show",f"{rev}:{f}"],cwd=root,capture_output=True,text=True).stdout
    lines=src.split("\n")
    # cut test modules
    i=0
    stack=[]
    test_cut=None
    for n,l in enumerate(lines):
        if re.match(r'\s*#\[cfg\(test\)\]',l): test_cut=n; break
    if test_cut is not None: lines=lines[:test_cut]
    n=0
    while n<len(lines):
        m=re.match(r'\s*(pub(\([a-z]+\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([a-zA-Z0-9_]+)',lines[n])
        if m:
            depth=0; started=False; end=n
            for k in range(n,len(lines)):
                code=re.sub(r'"([^"\\]|\\.)*"','""',lines[k]); code=re.sub(r"//.*","",code)
                if not started and ';' in code and '{' not in code: break
                for ch in code:
                    if ch=='{': depth+=1; started=True
                    elif ch=='}': depth-=1
                if started and depth==0: end=k; break
            if started: out.append((end-n+1,f"{f}:{n+1}",m.group(6)))
        n+=1
out.sort(reverse=True)
for l,loc,name in out[:int(sys.argv[2]) if len(sys.argv)>2 else 10]: print(f"{l:4d}  {name:30s} {loc}")
