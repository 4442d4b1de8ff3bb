// The resume cursor's text: moved to the common layer (common/cursor.ts), which every backend's key readers share.
export { compareIds, formatCursor, idBefore, isEntryId, maxCursorLength, parseCursor } from '../../durable/common/cursor';
