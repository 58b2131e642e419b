import { describe, expect, it } from "vitest";
import { StopMatcher } from "../../src/infer/stop.js";

describe("StopMatcher", () => {
  it("passes text through when no stop string occurs", () => {
    const matcher = new StopMatcher(["</s>"]);
    expect(matcher.check("hello world")).toEqual({ stopped: false, text: "hello world", safeLength: 11 });
    expect(new StopMatcher([]).check("anything")).toEqual({ stopped: false, text: "anything", safeLength: 8 });
  });

  it("cuts the text just before the stop string", () => {
    expect(new StopMatcher(["\n\n"]).check("answer: 4\n\nQuestion")).toEqual({
      stopped: true,
      text: "answer: 4",
      safeLength: 9,
    });
    expect(new StopMatcher(["Q:"]).check("Q: again")).toEqual({ stopped: true, text: "", safeLength: 0 });
  });

  it("stops at the earliest of several stop strings, including overlapping ones", () => {
    const matcher = new StopMatcher(["END", "\n", "ab"]);
    expect(matcher.check("one\ntwo END").text).toBe("one");
    expect(new StopMatcher(["b", "ab"]).check("xab").text).toBe("x");
  });

  it("holds back an ending that could still grow into a stop string", () => {
    const matcher = new StopMatcher(["</s>", "###"]);
    expect(matcher.check("done</").safeLength).toBe(4);
    expect(matcher.check("done##").safeLength).toBe(4);
    expect(matcher.check("done<x").safeLength).toBe(6);
  });

  it("finds a stop string spread over several streamed tokens", () => {
    const matcher = new StopMatcher(["<|end|>"]);
    let text = "";
    const emitted: string[] = [];
    let printed = 0;
    for (const token of ["The", " answer", " is 4", "<|", "end", "|>", " junk"]) {
      text += token;
      const result = matcher.check(text);
      emitted.push(result.text.slice(printed, result.safeLength));
      printed = result.safeLength;
      if (result.stopped) break;
    }
    expect(emitted.join("")).toBe("The answer is 4");
    expect(emitted).toEqual(["The", " answer", " is 4", "", "", ""]);
  });

  it("rejects an empty stop string", () => {
    expect(() => new StopMatcher(["ok", ""])).toThrow(expect.objectContaining({ code: "usage" }));
  });
});
